"""The tree walk gives each ensemble's own scores, and is not used when it does not."""

from __future__ import annotations

import dataclasses
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.ensemble import RandomForestRegressor

from experiments.scoring import artifact
from experiments.scoring.artifact import Artifact
from serving import fast_path, tree_walk
from serving.fast_path import FastScorer
from serving.schema import Listing
from serving.validation import Refused
from tests.helpers.models import FAMILY_NAMES, small_model
from tests.helpers.serving import artifact_of, pipeline_prices, scorer_of

ENSEMBLES = [f for f in FAMILY_NAMES if f != "ridge"]
BOOSTERS = [f for f in ENSEMBLES if f in fast_path.BOOSTERS]
CODES = 12  # categories of the synthetic categorical column


def bare(family: str, estimator: Any) -> Artifact:
    """Only the trees of a fitted estimator, as a scoring artifact holds them."""
    booster = None
    if family == "xgboost":
        booster = estimator.get_booster()
    elif family == "lightgbm":
        booster = estimator.booster_
    arrays = artifact._estimator_arrays(estimator, family)
    return Artifact(family, [], [], 0, arrays, booster, [], np.empty(0), None)


def served(estimator: Any) -> Any:
    """The library's own scores of ``estimator`` (what the walk must give)."""
    if hasattr(estimator, "booster_"):
        return estimator.booster_.predict
    return estimator.predict


@pytest.fixture(scope="module", params=ENSEMBLES)
def ensemble_model(request: pytest.FixtureRequest, clean_sample: pd.DataFrame) -> Any:
    return small_model(request.param, clean_sample)


def test_the_walk_gives_every_ensembles_own_scores(
    ensemble_model: Any,
    unseen_listings: list[Listing],
) -> None:
    scoring = artifact_of(ensemble_model)
    matrix = FastScorer(scoring).features(unseen_listings)
    assert np.isnan(matrix).any()  # blanks reach the trees
    estimator = ensemble_model.regressor_.steps[-1][1]
    walked = tree_walk.flatten(scoring).predict(matrix)
    if scoring.family == "catboost":  # the library takes text, not this matrix: the pipeline's
        own = np.log(pipeline_prices(ensemble_model, unseen_listings))
    else:
        own = served(estimator)(matrix)
    np.testing.assert_allclose(walked, own, rtol=1e-12)
    assert walked.std() > 0


def test_small_requests_are_walked_and_priced_as_the_pipeline_prices(
    ensemble_model: Any,
    unseen_listings: list[Listing],
) -> None:
    scorer, how = scorer_of(ensemble_model)
    assert "trees walked" in how, how
    listings = unseen_listings[:40]
    one_by_one = np.concatenate([scorer.predict([x]) for x in listings])
    np.testing.assert_allclose(one_by_one, pipeline_prices(ensemble_model, listings), rtol=1e-9)


def off(trees: tree_walk.Trees) -> tree_walk.Trees:
    """Fault injection: the flattened trees are off, as a misread library format would be."""
    return dataclasses.replace(trees, value=trees.value * 1.001)


@pytest.mark.parametrize("family", BOOSTERS)
def test_a_walk_that_disagrees_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
    family: str,
    clean_sample: pd.DataFrame,
    unseen_listings: list[Listing],
) -> None:
    """The check at load time refuses the walk; small requests keep the booster's prices."""
    model = small_model(family, clean_sample)
    flatten = tree_walk.flatten
    monkeypatch.setattr(fast_path, "flatten", lambda scoring: off(flatten(scoring)))
    scorer, how = scorer_of(model)
    assert "the tree walk disagreed" in how, how
    listing = unseen_listings[:1]
    np.testing.assert_allclose(scorer.predict(listing), pipeline_prices(model, listing), rtol=1e-9)


@pytest.mark.parametrize("family", fast_path.WALKED)
def test_a_walked_family_whose_walk_disagrees_is_refused(
    monkeypatch: pytest.MonkeyPatch, family: str, clean_sample: pd.DataFrame
) -> None:
    """A forest or CatBoost has no other scorer than its walk: off trees do not give the
    registered prices."""
    model = small_model(family, clean_sample)
    flatten = tree_walk.flatten
    monkeypatch.setattr(fast_path, "flatten", lambda scoring: off(flatten(scoring)))
    with pytest.raises(Refused) as refused:
        scorer_of(model)
    assert refused.value.verdict.code == "artifact_mismatch"


def test_ridge_has_no_trees_to_walk(clean_sample: pd.DataFrame) -> None:
    _, how = scorer_of(small_model("ridge", clean_sample))
    assert "walk" not in how


# --- each library's split rules, on data made to reach them ----------------------------------


def synthetic(n: int, seed: int, nan_share: float = 0.2) -> pd.DataFrame:
    """Two numeric columns (with NaN and exact zeros) and one categorical (with NaN)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    a[rng.random(n) < 0.15] = 0.0
    b = rng.uniform(0, 10, size=n)
    code = rng.integers(0, CODES, size=n).astype(np.float64)
    for column in (a, b, code):
        column[rng.random(n) < nan_share] = np.nan
    return pd.DataFrame({"a": a, "b": b, "code": code})


def target(frame: pd.DataFrame) -> np.ndarray:
    codes = frame["code"].fillna(-1).to_numpy()
    return (
        np.nan_to_num(frame["a"].to_numpy(), nan=2.0) * 3
        + np.where(np.isin(codes, [1, 4, 7]), 5.0, 0.0)
        + np.where(codes < 0, -4.0, 0.0)
        + np.sin(np.nan_to_num(frame["b"].to_numpy(), nan=1.0))
    )


def odd_rows() -> np.ndarray:
    """Rows the training never had: unseen, negative and huge codes, zeros, NaN everywhere."""
    rows = synthetic(300, seed=9).to_numpy(copy=True)
    rows[:20, 2] = [CODES, CODES + 5, -1, -3, 1e9, *range(15)]
    rows[20:40, 0] = 0.0
    rows[40:45] = np.nan
    return rows


def categorical(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    codes = out["code"].fillna(-1).astype(int)  # category k has code k; -1: missing
    out["code"] = pd.Categorical.from_codes(codes, categories=np.arange(CODES))
    return out


@pytest.mark.parametrize(
    "params",
    [{}, {"zero_as_missing": True}, {"use_missing": False}],
    ids=["nan-missing", "zero-missing", "no-missing"],
)
@pytest.mark.parametrize("nan_share", [0.2, 0.0], ids=["trained-with-nan", "trained-without"])
def test_lightgbm_rules(params: dict[str, Any], nan_share: float) -> None:
    frame = synthetic(2_000, seed=1, nan_share=nan_share)
    model = lgb.LGBMRegressor(
        n_estimators=40, num_leaves=15, min_child_samples=5, verbosity=-1, **params
    )
    model.fit(categorical(frame), target(frame), categorical_feature=["code"])
    rows, trees = odd_rows(), tree_walk.flatten(bare("lightgbm", model))
    np.testing.assert_allclose(trees.predict(rows), served(model)(rows), rtol=1e-12)
    # The rules under test are in the trees: categorical splits, and the missing type asked for.
    assert (trees.kind == tree_walk.CATEGORY).any()
    if params.get("zero_as_missing"):
        assert trees.zero_missing.any()
    if params or not nan_share:  # NaN read as zero, unless LightGBM learnt where NaN goes
        assert trees.nan_as_zero.any()


@pytest.mark.parametrize("max_cat_to_onehot", [1, 32], ids=["partition", "one-hot"])
def test_xgboost_rules(max_cat_to_onehot: int) -> None:
    frame = synthetic(2_000, seed=2)
    model = xgb.XGBRegressor(
        n_estimators=40,
        max_depth=5,
        enable_categorical=True,
        tree_method="hist",
        max_cat_to_onehot=max_cat_to_onehot,
        n_jobs=1,
    )
    model.fit(categorical(frame), target(frame))
    rows, trees = odd_rows(), tree_walk.flatten(bare("xgboost", model))
    np.testing.assert_allclose(trees.predict(rows), served(model)(rows), rtol=1e-12)
    assert (trees.kind == tree_walk.CATEGORY).any() and trees.missing_left.any()


def test_random_forest_rules() -> None:
    frame = synthetic(2_000, seed=3)  # NaN in training: scikit-learn learns where it goes
    model = RandomForestRegressor(n_estimators=15, min_samples_leaf=3, random_state=0)
    model.fit(frame.to_numpy(), target(frame))
    rows = odd_rows()
    np.testing.assert_allclose(
        tree_walk.flatten(bare("random_forest", model)).predict(rows),
        served(model)(rows),
        rtol=1e-12,
    )


def test_an_estimator_without_trees_is_not_walkable(clean_sample: pd.DataFrame) -> None:
    with pytest.raises(tree_walk.NotWalkable, match="ridge has no trees"):
        tree_walk.flatten(artifact_of(small_model("ridge", clean_sample)))
