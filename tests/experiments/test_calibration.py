"""Calibrated price ranges on generated listings: they cover what they say, adaptively."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments import calibration
from experiments.families import build_model
from experiments.scoring.ranges import percent
from tasador.core.cleaning import clean_frame
from tasador.core.columns import HOUSES, LAND, TARGET
from tests.helpers.listings import generate_listings

TOLERANCE = 0.04  # a 3,000-row holdout's coverage has a standard error of ~0.7 point at 80%


@pytest.fixture(scope="module")
def calibrated() -> tuple[calibration.RangeTable, pd.DataFrame, np.ndarray]:
    """A LightGBM model refitted on 5,000 generated listings, its ranges calibrated out of fold,
    and 3,000 listings of another seed (the holdout) with its prices for them."""
    train, _ = clean_frame(generate_listings(5_000, seed=11))
    holdout, _ = clean_frame(generate_listings(3_000, seed=12))
    model = build_model("lightgbm", {"n_estimators": 80, "num_leaves": 15}, n_jobs=1, seed=0)
    model.fit(train.drop(columns=[TARGET]), train[TARGET].to_numpy())
    table = calibration.price_ranges(model, train, holdout, folds=5, seed=0)
    prices = np.asarray(model.predict(holdout.drop(columns=[TARGET])), dtype=np.float64)
    return table, holdout, prices


@pytest.mark.parametrize("coverage", [0.5, 0.8, 0.95])
def test_ranges_cover_the_nominal_share_of_unseen_listings_overall_and_per_kind(
    calibrated: tuple[calibration.RangeTable, pd.DataFrame, np.ndarray], coverage: float
) -> None:
    table = calibrated[0]
    measured = table.holdout[percent(coverage)]
    assert table.holdout_rows[LAND] >= 200  # enough land rows for the per-kind figure to mean it
    for kind in ("overall", HOUSES, LAND):
        tolerance = TOLERANCE if kind != LAND else 2.5 * TOLERANCE  # fewer rows, more noise
        assert abs(measured[kind] - coverage) <= tolerance, (kind, measured)


def test_land_gets_wider_ranges_than_houses_and_each_price_is_inside_its_range(
    calibrated: tuple[calibration.RangeTable, pd.DataFrame, np.ndarray],
) -> None:
    table, holdout, prices = calibrated
    land = calibration.land_of(holdout)
    low, high = table.bounds(prices, land, 0.8)
    relative = (high - low) / prices
    assert np.median(relative[land]) > 1.5 * np.median(relative[~land])
    assert np.all((low <= prices) & (prices <= high))
    # Higher coverage, wider ranges, for every listing.
    low95, high95 = table.bounds(prices, land, 0.95)
    low50, high50 = table.bounds(prices, land, 0.5)
    assert np.all((high95 - low95) >= (high50 - low50))


def test_one_width_for_all_would_miss_land_where_the_kinds_keep_their_coverage(
    calibrated: tuple[calibration.RangeTable, pd.DataFrame, np.ndarray],
) -> None:
    table, holdout, prices = calibrated
    land = calibration.land_of(holdout)
    errors = np.abs(np.log(holdout[TARGET].to_numpy(dtype=np.float64) / prices))
    one_width = np.quantile(errors, 0.8)  # an oracle: the holdout's own 80% quantile
    assert np.mean(errors[land] <= one_width) < 0.8 - 2 * TOLERANCE
    assert abs(table.holdout["80"][LAND] - 0.8) < np.abs(np.mean(errors[land] <= one_width) - 0.8)


def test_a_kind_without_enough_rows_borrows_the_pooled_table() -> None:
    rng = np.random.default_rng(0)
    truth = np.exp(rng.normal(12, 1, 2_000))
    predicted = truth * np.exp(rng.normal(0, 0.3, 2_000))
    land = np.zeros(2_000, bool)
    land[:10] = True
    table = calibration.calibrate(truth, predicted, land, "test rows")
    assert table.kinds[LAND].pooled and table.kinds[LAND].rows == 10
    assert not table.kinds[HOUSES].pooled
    assert np.isfinite(table.kinds[LAND].highs).all() and (table.kinds[LAND].lows <= 0).all()
