"""Calibrating a version's price ranges at registration (conformal prediction, CV+ style).

**Which rows.** Conformal ranges need residuals of rows the model did not learn from. The shared
holdout must stay untouched: it measures the ranges' coverage (and decides promotions). A split
of the training rows kept out of the refit would cost the registered model those rows. So the
residuals are out-of-fold: the chosen configuration is fitted ``range_folds`` times, each time on
all refit rows but one fold, and prices the fold it did not see (CV+, Barber et al. 2021). Each
row's residual is then an honest error of a model of the same configuration on nearly as many
rows as the registered one, and every refit row is a calibration row.

**Adaptive.** The conformal regressor is crepes' ``ConformalRegressor`` with Mondrian categories
(a quantile per category): houses and land apart (land's prices are far less predictable), and
within each kind equal-sized bins of predicted log price (crepes' ``binning``), the difficulty
estimate serving can compute from the price alone. A kind with too few rows for bins of its own
takes the pooled table. The result is stored as data (experiments.scoring.ranges) for every
coverage of ``RANGE_COVERAGES``, and measured on the holdout before it is registered.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold

from experiments import data
from experiments.inputs import model_input
from experiments.scoring.ranges import KINDS, OVERALL, KindTable, RangeTable, land_of, percent
from tasador.core import timings
from tasador.core.columns import HOUSES, LAND, TARGET
from tasador.core.config import RANGE_COVERAGES

# Rows per bin: a 95% quantile of fewer than ~100 residuals moves by points between draws.
MIN_BIN_ROWS = 150
MAX_BINS = 8
# A kind with fewer calibration rows than this borrows the pooled table: 19 rows are the fewest
# a 95% conformal quantile can be finite with, and a few more keep it from being the maximum.
MIN_KIND_ROWS = 40


def out_of_fold(model: Any, train: pd.DataFrame, folds: int, seed: int) -> np.ndarray:
    """Each training row's price from a copy of ``model``'s configuration that did not learn it
    (``folds`` folds, shuffled with ``seed``)."""
    features, prices = train.drop(columns=[TARGET]), data.target(train)
    out = np.empty(len(train), dtype=np.float64)
    splits = KFold(n_splits=min(folds, len(train)), shuffle=True, random_state=seed)
    for learn, held in splits.split(features):
        fold = clone(model).fit(features.iloc[learn], prices[learn])
        out[held] = np.asarray(fold.predict(features.iloc[held]), dtype=np.float64).ravel()
    return out


def _splits(coverage: float) -> np.ndarray:
    """The lower tail shares an interval of ``coverage`` may leave out: 1%, 2%, ... of the
    rows below it (never 0: its low end would be minus infinity)."""
    return np.arange(1, round((1 - coverage) * 100)) / 100


def _kind_table(log_predicted: np.ndarray, residuals: np.ndarray, seed: int) -> KindTable:
    """Mondrian conformal intervals over bins of predicted log price (crepes' conformal
    predictive system: each bin's conformal distribution of the residual).

    Per bin and coverage, the interval kept is the shortest in dollars among those leaving out
    1%, 2%, ... below: residuals in log price are skewed, and exp stretches the high side, so
    the equal-tailed interval is far from the narrowest range a person reads in dollars."""
    from crepes import ConformalPredictiveSystem
    from crepes.extras import binning

    count = int(np.clip(len(residuals) // MIN_BIN_ROWS, 1, MAX_BINS))
    if count > 1:
        _, thresholds = binning(log_predicted, bins=count, seed=seed)
        edges = np.asarray(thresholds, dtype=np.float64)[1:-1]  # crepes' ends are -inf, inf
    else:
        edges = np.empty(0)
    shape = (len(edges) + 1, len(RANGE_COVERAGES))
    table = KindTable(edges, np.zeros(shape), np.zeros(shape), len(residuals))
    system = ConformalPredictiveSystem().fit(residuals, bins=table.bins(log_predicted))
    every_bin = np.arange(shape[0])
    for column, coverage in enumerate(RANGE_COVERAGES):
        below = _splits(coverage)
        ends = system.predict(
            np.zeros(shape[0]),
            bins=every_bin,
            lower_percentiles=100 * below,
            higher_percentiles=100 * (below + coverage),
            smoothing=False,  # the same table from the same rows
        )
        lows, highs = ends[:, : len(below)], ends[:, len(below) :]
        best = np.argmin(np.exp(highs) - np.exp(lows), axis=1)
        # The price inside its own range: clipping only widens it, so coverage holds.
        table.lows[:, column] = np.minimum(lows[every_bin, best], 0.0)
        table.highs[:, column] = np.maximum(highs[every_bin, best], 0.0)
    return table


def calibrate(
    truth: np.ndarray, predicted: np.ndarray, land: np.ndarray, calibration: str, seed: int = 0
) -> RangeTable:
    """The range table of out-of-fold ``predicted`` prices against the ``truth`` (both dollars);
    ``calibration`` says in words which rows they are."""
    log_predicted = np.log(predicted)
    residuals = np.log(truth) - log_predicted
    finite = np.isfinite(residuals)
    pooled = _kind_table(log_predicted[finite], residuals[finite], seed)
    kinds: dict[str, KindTable] = {}
    for kind, mask in ((HOUSES, ~land & finite), (LAND, land & finite)):
        if mask.sum() < MIN_KIND_ROWS:
            kinds[kind] = replace(pooled, rows=int(mask.sum()), pooled=True)
        else:
            kinds[kind] = _kind_table(log_predicted[mask], residuals[mask], seed)
    assert set(kinds) == set(KINDS)  # serving looks up both
    return RangeTable(coverages=RANGE_COVERAGES, kinds=kinds, calibration=calibration)


def measured(table: RangeTable, model: Any, holdout: pd.DataFrame) -> RangeTable:
    """``table`` with the coverage it reaches on ``holdout`` priced by ``model``."""
    if holdout.empty:
        return table
    prices = np.asarray(model.predict(model_input(holdout)), dtype=np.float64).ravel()
    shares, rows = table.measure(prices, data.target(holdout), land_of(holdout))
    return replace(table, holdout=shares, holdout_rows=rows)


def _finite(table: RangeTable) -> bool:
    return all(
        np.isfinite(t.lows).all() and np.isfinite(t.highs).all() for t in table.kinds.values()
    )


@timings.step("calibrate_ranges")  # benchmarks/loop.py times it
def price_ranges(
    model: Any, train: pd.DataFrame, holdout: pd.DataFrame, folds: int, seed: int
) -> RangeTable | None:
    """The calibrated ranges of ``model`` (fitted on ``train``), measured on ``holdout``; None
    when ``train`` has too few rows for a finite 95% range (the version serves without)."""
    if len(train) < MIN_KIND_ROWS:
        return None
    predicted = out_of_fold(model, train, folds, seed)
    how = f"{folds}-fold out-of-fold residuals of its configuration on its {len(train):,} rows"
    table = calibrate(data.target(train), predicted, land_of(train), how, seed)
    return measured(table, model, holdout) if _finite(table) else None


def metrics(table: RangeTable) -> dict[str, float]:
    """The holdout coverages as MLflow metrics: ``range_coverage_80`` (overall),
    ``range_coverage_80_houses``, ``range_coverage_80_land``..."""
    out: dict[str, float] = {}
    for coverage in table.coverages:
        for kind, share in table.holdout.get(percent(coverage), {}).items():
            suffix = "" if kind == OVERALL else f"_{kind}"
            out[f"range_coverage_{percent(coverage)}{suffix}"] = share
    return out
