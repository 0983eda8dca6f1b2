"""Scoring validated listings from a version's scoring artifact: no pandas, no pickle.

Why: the registered model is a scikit-learn pipeline over pandas (``experiments.features``) that
costs 10-45 ms for a single row on this hardware, almost all of it per-call overhead of pandas and
``ColumnTransformer`` bookkeeping; the estimators themselves answer in microseconds. The serving
target is a p99 of 10 ms per request, for whichever family the search picked. And loading that
pipeline means unpickling it, which runs code: serving loads the version's scoring artifact
instead (experiments.scoring.artifact), data only.

What: :class:`FastScorer` fills the encoded feature matrix with the artifact's blocks
(experiments.scoring.encoding: numeric columns as constants, text columns as category tables)
from ``ListingFrame``'s columns derived here (:func:`derived_columns`, the one mirror of
training's feature code in serving). The estimator prices the matrix: boosters through their own
``predict`` on one thread, small requests by walking their trees (serving.tree_walk) once the walk
matched the booster on the probe listings; a forest and CatBoost's symmetric trees always by
walking them (serving has neither library); ridge as
``X @ coef + intercept``. The whole is checked when the version loads: the artifact must give
the prices the pipeline gave at registration (:func:`mismatch`, called by serving.models).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from experiments.scoring.artifact import Artifact
from serving.batch import NUMERIC, ListingColumns
from serving.schema import Listing
from serving.tree_walk import NotWalkable, Trees, flatten

# Requests of at most this many listings walk a booster's trees (serving.tree_walk); larger ones
# go through the library's own predict, which costs less per row once its per-call cost is paid.
WALK_MAX_ROWS = 16
RELATIVE_TOLERANCE = 1e-6
BOOSTERS = ("xgboost", "lightgbm")
# Families serving holds as arrays only, no library object: every request walks their trees.
WALKED = ("random_forest", "catboost")


def _sold_year(days: np.ndarray) -> np.ndarray:
    """``ListingFrame``'s year + (day of year - 1) / 366, NaN where the date is missing."""
    years = days.astype("datetime64[Y]")
    day_of_year = (days - years.astype("datetime64[D]")).astype(np.float64)  # 0-based
    sold = (years.astype(np.float64) + 1970.0) + day_of_year / 366.0
    return np.where(np.isnat(days), np.nan, sold)


def derived_columns(listings: Sequence[Listing]) -> dict[str, Any]:
    """``ListingFrame``'s columns for validated listings, column by column (see the module doc):
    numbers as float arrays (NaN: missing), text as lists (None: missing)."""
    batch = ListingColumns.of(listings)
    columns = batch.columns
    states, zips = columns["state"], columns["zip_code"]
    return {
        **{c: batch.floats(c) for c in NUMERIC},
        "prev_sold_year": _sold_year(batch.days()),
        "status": columns["status"],
        "state": states,
        "zip_code_3": [z if z is None else z[:3] for z in zips],
        "city": [
            None if city is None else f"{state or '?'}|{city.lower()}"
            for state, city in zip(states, columns["city"], strict=True)
        ],
        "zip_code": zips,
        "brokered_by": [b if b is None else str(b) for b in columns["brokered_by"]],
    }


# --- estimators -----------------------------------------------------------------------------

Predict = Callable[[np.ndarray], np.ndarray]


def _estimator(artifact: Artifact) -> Predict:
    # One thread per call: requests come one or a few rows at a time, and a thread pool woken for
    # each cost 5x the CPU of the prediction itself (benchmarks/serve.py); concurrency comes from
    # the requests and the worker processes, not from inside one of them.
    booster = artifact.booster
    if artifact.family == "xgboost":  # loaded with one thread (experiments.scoring.artifact)
        return functools.partial(booster.inplace_predict, validate_features=False)
    if artifact.family == "lightgbm":
        return functools.partial(booster.predict, num_threads=1)
    if artifact.family in WALKED:
        return flatten(artifact).predict
    coef = artifact.arrays["coef"].astype(np.float64)
    intercept = float(artifact.arrays["intercept"])
    return lambda matrix: matrix @ coef + intercept


class FastScorer:
    """Prices for validated listings, from a version's scoring artifact."""

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self._estimator = _estimator(artifact)
        self._trees: Trees | None = None

    def features(self, listings: Sequence[Listing]) -> np.ndarray:
        """The encoded feature matrix the estimator takes."""
        columns = derived_columns(listings)
        out = np.empty((len(listings), self.artifact.width), dtype=np.float64)
        for block in self.artifact.blocks:
            block.fill(columns, out)
        return out

    def predict(self, listings: Sequence[Listing]) -> np.ndarray:
        matrix = self.features(listings)
        if self._trees is not None and len(matrix) <= WALK_MAX_ROWS:
            scores = self._trees.predict(matrix)
        else:
            scores = self._estimator(matrix)
        return np.asarray(np.exp(scores), dtype=np.float64).ravel()  # the model learnt log price

    def walk_trees(self, probes: Sequence[Listing]) -> str | None:
        """Walk a booster's trees for small requests if the walk gives the booster's own scores
        on ``probes``; what was decided, in words (None: the estimator has no trees)."""
        if self.artifact.family in WALKED:
            return "trees walked"
        if self.artifact.family not in BOOSTERS:
            return None
        try:
            trees = flatten(self.artifact)
        except NotWalkable as exc:
            return f"{exc}: not walked"
        matrix = self.features(probes)
        expected = np.asarray(self._estimator(matrix), dtype=np.float64).ravel()
        try:
            got = trees.predict(matrix)
        except Exception as exc:  # a walk that breaks is a walk that disagrees
            return f"the tree walk failed ({type(exc).__name__}: {exc})"
        if not np.allclose(got, expected, rtol=1e-12, atol=0.0, equal_nan=True):
            worst = float(np.max(np.abs(got - expected)))
            return f"the tree walk disagreed with the booster (by {worst:.3g}): not walked"
        self._trees = trees
        return f"trees walked for up to {WALK_MAX_ROWS} listings"


def mismatch(scorer: FastScorer, listings: Sequence[Listing], expected: np.ndarray) -> str | None:
    """Why ``scorer`` does not give the ``expected`` prices (None: it does, within tolerance)."""
    try:
        got = scorer.predict(listings)
    except Exception as exc:  # an artifact that breaks is an artifact that disagrees
        return f"scoring failed ({type(exc).__name__}: {exc})"
    if np.allclose(got, expected, rtol=RELATIVE_TOLERANCE, atol=0.0, equal_nan=True):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.nan_to_num(np.abs(got - expected) / np.abs(expected), nan=np.inf)
    worst = int(np.argmax(gap))
    return (
        f"{got[worst]:.2f} instead of {expected[worst]:.2f} for "
        f"{listings[worst].model_dump(exclude_none=True)}"
    )
