import numpy as np
import pandas as pd
import pytest

from experiments import explain
from experiments.explain import (
    BASE_VALUE,
    diff_sentence,
    explain_change,
    explain_rows,
    global_importance,
    importance_diff,
)
from experiments.families import FAMILIES, build_model
from experiments.features import INPUT_COLUMNS
from tests.experiments.test_features import SMALL


@pytest.fixture(scope="module")
def split(clean_sample):
    return clean_sample.iloc[:2000], clean_sample.iloc[2000:2100]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_contributions_add_up_to_the_log_prediction_for_every_family(name, split):
    train, rows = split
    model = build_model(name, SMALL[name]).fit(train.drop(columns="price"), train["price"])
    explained = explain_rows(model, rows.drop(columns="price"))
    assert list(explained.index) == list(rows.index)
    assert set(explained.columns) - {BASE_VALUE} <= set(INPUT_COLUMNS) - {"street"}
    assert {"house_size", "state", "zip_code"} <= set(explained.columns)
    total = explained.sum(axis=1).to_numpy()
    assert np.allclose(total, np.log(model.predict(rows)), atol=1e-3)


def test_a_forest_past_the_exact_budget_gets_additive_approximate_contributions(split, monkeypatch):
    train, rows = split
    model = build_model("random_forest", {"n_estimators": 20, "min_samples_leaf": 1})
    model.fit(train.drop(columns="price"), train["price"])
    exact = explain_rows(model, rows.drop(columns="price"))
    monkeypatch.setattr(explain, "EXACT_BUDGET", 0.0)  # as if the forest were huge
    approximate = explain_rows(model, rows.drop(columns="price"))
    assert not np.allclose(approximate.to_numpy(), exact.to_numpy())  # another method ran
    total = approximate.sum(axis=1).to_numpy()
    assert np.allclose(total, np.log(model.predict(rows)), atol=1e-3)  # still adds up


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
    change = explain_change(boosted, linear, rows, previous_version=1, title="v2 vs v1")
    assert change.png.startswith(b"\x89PNG")
    assert set(change.diff.columns) == {"feature", "new", "previous", "change"}
    assert change.diff["previous"].notna().all()
    assert global_importance(boosted, rows).index[0] == change.diff["feature"].iloc[0]
