import numpy as np
import optuna
import pandas as pd
import pytest

from experiments import explain, spaces
from experiments.explain import (
    BASE_VALUE,
    Explained,
    NoBackground,
    background_rows,
    diff_sentence,
    explain_change,
    explain_rows,
    global_importance,
    importance_diff,
)
from experiments.families import FAMILIES, build_model
from experiments.inputs import INPUT_COLUMNS
from serving.fast_path import FastScorer
from tests.helpers.models import SMALL
from tests.helpers.serving import artifact_of, listings_of

SEARCHED = spaces.load_spaces()  # the repository's search_spaces/: every family it defines


@pytest.fixture(scope="module")
def split(clean_sample):
    return clean_sample.iloc[:2000], clean_sample.iloc[2000:2100]


def fit_from_space(name, train):
    """A model of ``name`` with parameters drawn from its search space (fewer trees: speed)."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    params, smoothing = SEARCHED[name].suggest(trial)
    if "n_estimators" in params:
        params["n_estimators"] = min(params["n_estimators"], 40)
    extra = {} if smoothing is None else {"smoothing": smoothing}
    model = build_model(name, params, **extra)
    return model.fit(train.drop(columns="price"), train["price"])


@pytest.mark.parametrize("name", sorted(SEARCHED))
def test_explanations_are_relative_to_training_rows_for_every_searched_family(name, split):
    train, rows = split
    model = fit_from_space(name, train)
    background = background_rows(train, seed=0)
    X = rows.drop(columns="price")
    log_price = np.log(model.predict(X))
    explained = explain_rows(model, X, background)

    # The base value is the model's expectation over training rows: one value, whatever is
    # explained (explaining a row against itself made it equal each row's own prediction).
    assert explained[BASE_VALUE].nunique() == 1
    base = explained[BASE_VALUE].iloc[0]
    for i in (0, 5, 9):
        assert explain_rows(model, X.iloc[[i]], background)[BASE_VALUE].iloc[0] == pytest.approx(
            base
        )
    assert not np.allclose(log_price, base)
    assert abs(base - np.log(train["price"]).mean()) < 0.5  # near the training rows' log price

    # Base plus contributions is the log prediction, row by row.
    assert np.allclose(explained.sum(axis=1).to_numpy(), log_price, atol=1e-3)

    # A field whose change moves the prediction contributes: never the all-zero explanation.
    contributions = explained.drop(columns=BASE_VALUE)
    assert (contributions.abs().sum(axis=1) > 1e-3).all()
    moved = np.log(model.predict(X.assign(house_size=X["house_size"] * 3))) != log_price
    assert moved.any()
    assert (contributions.loc[moved, "house_size"].abs() > 1e-9).all()


def test_a_linear_contribution_moves_by_exactly_what_its_field_moves_the_price(split):
    train, rows = split
    model = fit_from_space("ridge", train)
    background = background_rows(train, seed=0)
    X = rows.drop(columns="price").iloc[:20]
    bigger = X.assign(house_size=X["house_size"] * 2)
    before, after = explain_rows(model, X, background), explain_rows(model, bigger, background)
    shift = np.log(model.predict(bigger)) - np.log(model.predict(X))
    assert np.allclose(after["house_size"] - before["house_size"], shift, atol=1e-6)
    others = before.columns.drop("house_size")
    assert np.allclose(after[others], before[others])  # the other fields did not change
    with pytest.raises(NoBackground, match="background"):
        explain_rows(model, X, None)


def test_the_background_is_a_reproducible_sample_of_model_inputs(split):
    train, _ = split
    first, again = background_rows(train, seed=3), background_rows(train, seed=3)
    assert len(first) == explain.BACKGROUND_ROWS and first.equals(again)
    assert list(first.columns) == list(INPUT_COLUMNS)
    assert len(background_rows(train.head(10), seed=3)) == 10


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_contributions_add_up_to_the_log_prediction_for_every_family(name, split):
    train, rows = split
    model = build_model(name, SMALL[name]).fit(train.drop(columns="price"), train["price"])
    explained = explain_rows(model, rows.drop(columns="price"), background_rows(train, 0))
    assert list(explained.index) == list(rows.index)
    assert set(explained.columns) - {BASE_VALUE} <= set(INPUT_COLUMNS) - {"street"}
    assert {"house_size", "state", "zip_code"} <= set(explained.columns)
    total = explained.sum(axis=1).to_numpy()
    assert np.allclose(total, np.log(model.predict(rows)), atol=1e-3)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_the_scoring_artifact_is_explained_as_the_pipeline_is(name, split):
    """Serving explains from the artifact (no pickle): the same contributions, every family."""
    train, rows = split
    model = build_model(name, SMALL[name]).fit(train.drop(columns="price"), train["price"])
    background = background_rows(train, 0)
    scoring = artifact_of(model, background)
    matrix = FastScorer(scoring).features(listings_of(rows))
    got = explain.artifact_explainer(scoring)(matrix)
    want = explain_rows(model, rows.drop(columns="price"), background)
    assert list(got.columns) == list(want.columns)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), atol=1e-6)


def test_a_forest_past_the_exact_budget_gets_additive_approximate_contributions(split, monkeypatch):
    train, rows = split
    model = build_model("random_forest", {"n_estimators": 20, "min_samples_leaf": 1})
    model.fit(train.drop(columns="price"), train["price"])
    exact = explain_rows(model, rows.drop(columns="price"), None)
    monkeypatch.setattr(explain, "EXACT_BUDGET", 0.0)  # as if the forest were huge
    approximate = explain_rows(model, rows.drop(columns="price"), None)
    assert not np.allclose(approximate.to_numpy(), exact.to_numpy())  # another method ran
    total = approximate.sum(axis=1).to_numpy()
    assert np.allclose(total, np.log(model.predict(rows)), atol=1e-3)  # still adds up
    scoring = artifact_of(model)  # and serving's explainer takes the same road
    served = explain.artifact_explainer(scoring)(FastScorer(scoring).features(listings_of(rows)))
    np.testing.assert_allclose(served.to_numpy(), approximate.to_numpy(), atol=1e-6)


def test_importance_diff_and_sentence_name_what_gained_and_lost():
    new = pd.Series({"house_size": 0.5, "state": 0.2, "city": 0.1})
    old = pd.Series({"house_size": 0.3, "state": 0.4, "city": 0.1})
    diff = importance_diff(new, old)
    assert diff["feature"].tolist() == ["house_size", "state", "city"]
    assert diff["change"].round(3).tolist() == [0.2, -0.2, 0.0]
    sentence = diff_sentence(diff, previous_version=4)
    assert "version 4" in sentence
    assert "house_size gained most (+0.200)" in sentence and "state lost most (-0.200)" in sentence
    first = diff_sentence(importance_diff(new, None))
    assert first.startswith("house_size matters most, then state and city")


def test_explain_change_compares_two_families_on_the_same_rows(split):
    train, rows = split
    X, y = train.drop(columns="price"), train["price"]
    boosted = build_model("lightgbm", SMALL["lightgbm"]).fit(X, y)
    linear = build_model("ridge", SMALL["ridge"]).fit(X, y)
    background = background_rows(train, 0)
    change = explain_change(
        Explained(boosted, background),
        Explained(linear, background),
        rows,
        previous_version=1,
        title="v2 vs v1",
    )
    assert change.png.startswith(b"\x89PNG")
    assert set(change.diff.columns) == {"feature", "new", "previous", "change"}
    assert change.diff["previous"].notna().all()
    assert (change.diff["previous"] > 0).any()  # the linear model's importances are not all 0
    top = global_importance(boosted, rows, background).index[0]
    assert top == change.diff["feature"].iloc[0]
