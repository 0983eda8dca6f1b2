"""Scoring validated listings without pandas, for every model family training produces.

Why: the logged model is a scikit-learn pipeline over pandas (``experiments.features``) that
costs 10-45 ms for a single row on this hardware, almost all of it per-call overhead of pandas and
``ColumnTransformer`` bookkeeping; the estimators themselves answer in microseconds. The serving
target is a p99 of 10 ms per request, for whichever family the search picked.

What: :func:`compile_fast_path` reads the *fitted state* of the pipeline once per loaded version
and compiles its encoding step into blocks of array lookups and arithmetic (serving.encoding:
numeric columns as constants, text columns as category tables).

The estimator gets the compiled float matrix: boosters through their own ``predict``, random
forests through each fitted tree's compiled ``predict`` (no per-call validation or thread pool),
ridge as ``X @ coef + intercept``. ``derived_columns`` mirrors ``ListingFrame`` for
already-validated fields; that mirror is the one duplicated piece of logic in serving, so it is
guarded twice: any pipeline shape not recognised raises :class:`Unsupported`, and the compiled
scorer is checked against the pipeline's own ``predict`` on probe listings drawn from the model's
vocabulary before it is used. Either way the version is then served by the pipeline (slower,
never different) and ``GET /model`` says so, with the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any, cast

import numpy as np
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.pipeline import Pipeline

from experiments.features import ListingFrame
from experiments.inputs import model_input
from serving.encoding import Unsupported, compile_blocks, derived_columns, vocabulary
from serving.schema import Listing
from serving.tree_walk import NotWalkable, Trees, estimator_kind, flatten, is_ensemble
from tasador.core.columns import STATUSES

PROBE_ROWS = 256
# Requests of at most this many listings walk the trees (serving.tree_walk); larger ones go
# through the library's own predict, which costs less per row once its per-call cost is paid.
WALK_MAX_ROWS = 16
RELATIVE_TOLERANCE = 1e-6


# --- estimators -----------------------------------------------------------------------------

Predict = Callable[[np.ndarray], np.ndarray]


def _forest(estimator: Any) -> Predict:
    """The mean of the fitted trees' leaf values, each found by the tree's compiled descent (as
    ``predict`` does, without validation and thread pool per call; same float32 input, same
    order of summation)."""
    if estimator.n_outputs_ != 1:
        raise Unsupported("a forest of several outputs")
    # Each tree's leaf values, read once: per call only the compiled descent (``apply``) runs.
    trees = [(tree.tree_.apply, tree.tree_.value[:, 0, 0].copy()) for tree in estimator.estimators_]

    def predict(matrix: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(matrix, dtype=np.float32)
        total = np.zeros(len(x), dtype=np.float64)
        for leaf_of, values in trees:
            total += values[leaf_of(x)]
        return total / len(trees)

    return predict


def _linear(estimator: Any) -> Predict:
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    if coef.ndim != 1:
        raise Unsupported("a linear model of several outputs")
    intercept = float(estimator.intercept_)
    return lambda matrix: matrix @ coef + intercept


def _estimator(estimator: Any) -> Predict:
    # One thread per call: requests come one or a few rows at a time, and a thread pool woken for
    # each cost 5x the CPU of the prediction itself (benchmarks/serve.py); concurrency comes from
    # the requests and the worker processes, not from inside one of them.
    kind = estimator_kind(estimator)
    if kind == "xgboost.sklearn.XGBRegressor":
        estimator.set_params(n_jobs=1)  # the served copy, loaded for this process only
        # numpy in: XGBoost's in-place prediction, codes as categories
        return cast(Predict, estimator.predict)
    if kind == "lightgbm.sklearn.LGBMRegressor":
        return functools.partial(estimator.booster_.predict, num_threads=1)
    if kind == "sklearn.ensemble._forest.RandomForestRegressor":
        return _forest(estimator)
    if kind == "sklearn.linear_model._ridge.Ridge":
        return _linear(estimator)
    raise Unsupported(f"estimator {kind}")


class FastScorer:
    """Prices for validated listings, from a fitted ``experiments.features`` pipeline."""

    def __init__(self, model: Any) -> None:
        if type(model) is not TransformedTargetRegressor or model.transformer is not None:
            raise Unsupported(f"model {type(model).__name__} (expected a log-price regressor)")
        pipeline = model.regressor_
        if type(pipeline) is not Pipeline or len(pipeline.steps) != 3:
            raise Unsupported("regressor is not a listing -> encode -> estimator pipeline")
        (_, listing), (_, encode), (_, estimator) = pipeline.steps
        if type(listing) is not ListingFrame or type(encode) is not ColumnTransformer:
            raise Unsupported("pipeline steps are not ListingFrame then ColumnTransformer")
        self._blocks, self._width = compile_blocks(encode)
        self._fitted = estimator
        self._estimator = _estimator(estimator)
        self._trees: Trees | None = None
        self._inverse = model.inverse_func or (lambda y: y)
        self.vocabulary = vocabulary(self._blocks)

    def features(self, listings: Sequence[Listing]) -> np.ndarray:
        """The encoded feature matrix the estimator takes."""
        columns = derived_columns(listings)
        out = np.empty((len(listings), self._width), dtype=np.float64)
        for block in self._blocks:
            block.fill(columns, out)
        return out

    def predict(self, listings: Sequence[Listing]) -> np.ndarray:
        matrix = self.features(listings)
        if self._trees is not None and len(matrix) <= WALK_MAX_ROWS:
            scores = self._trees.predict(matrix)
        else:
            scores = self._estimator(matrix)
        prices = self._inverse(scores)
        return np.asarray(prices, dtype=np.float64).ravel()

    def walk_trees(self, probes: Sequence[Listing]) -> str | None:
        """Walk the trees for small requests if the walk gives the estimator's own scores on
        ``probes``; what was decided, in words (None: the estimator has no trees)."""
        if not is_ensemble(self._fitted):
            return None
        try:
            trees = flatten(self._fitted)
        except NotWalkable as exc:
            return f"{exc} is not walked"
        matrix = self.features(probes)
        expected = np.asarray(self._estimator(matrix), dtype=np.float64).ravel()
        try:
            got = trees.predict(matrix)
        except Exception as exc:  # a walk that breaks is a walk that disagrees
            return f"the tree walk failed ({type(exc).__name__}: {exc})"
        if not np.allclose(got, expected, rtol=1e-12, atol=0.0, equal_nan=True):
            worst = float(np.max(np.abs(got - expected)))
            return f"the tree walk disagreed with the estimator (by {worst:.3g}): not walked"
        self._trees = trees
        return f"trees walked for up to {WALK_MAX_ROWS} listings"


def probe_listings(vocabulary: dict[str, list[Any]], n: int = PROBE_ROWS) -> list[Listing]:
    """Listings mixing known and unseen values, blanks and edge values, reproducibly."""
    rng = np.random.default_rng(0)

    def pick(column: str, unseen: Any) -> Any:
        values = vocabulary.get(column) or [unseen]
        roll = rng.random()
        if roll < 0.1:
            return None
        return unseen if roll < 0.2 else values[rng.integers(len(values))]

    def number(low: float, high: float) -> float | None:
        return None if rng.random() < 0.15 else float(rng.uniform(low, high))

    listings = [Listing()]
    for _ in range(n - 1):
        state_city = pick("city", "Nowhere|atlantis")
        state, city = state_city.split("|", 1) if state_city else (None, None)
        zip_code = pick("zip_code", "99999")
        broker = pick("brokered_by", "123456789")
        bed = number(0, 8)
        sold = (
            None
            if rng.random() < 0.3
            else date(1990, 1, 1) + timedelta(int(rng.integers(0, 12_000)))
        )
        listings.append(
            Listing(
                brokered_by=None if broker is None else int(broker),
                status=None if rng.random() < 0.1 else STATUSES[rng.integers(len(STATUSES))],
                bed=None if bed is None else round(bed),
                bath=None if bed is None else round(bed / 2),
                acre_lot=number(0, 5),
                city=city.title() if city else None,
                state=pick("state", "Atlantis") if state in (None, "?") else state,
                zip_code=zip_code,
                house_size=number(300, 6_000),
                prev_sold_date=sold,
            )
        )
    return listings


def pipeline_prices(model: Any, listings: Sequence[Listing]) -> np.ndarray:
    """The pipeline's own answer for validated listings (the reference the fast path meets)."""
    records = [listing.model_dump(exclude={"price"}) for listing in listings]
    return np.asarray(model.predict(model_input(records)), dtype=np.float64).ravel()


def check(scorer: FastScorer, model: Any, probes: Sequence[Listing]) -> str | None:
    """Why ``scorer`` is not ``model`` on ``probes`` (None: it matches within tolerance)."""
    expected = pipeline_prices(model, probes)
    try:
        got = scorer.predict(probes)
    except Exception as exc:  # a mirror that breaks is a mirror that disagrees
        return f"the fast path failed on the probe listings ({type(exc).__name__}: {exc})"
    if np.allclose(got, expected, rtol=RELATIVE_TOLERANCE, atol=0.0, equal_nan=True):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.nan_to_num(np.abs(got - expected) / np.abs(expected), nan=np.inf)
    worst = int(np.argmax(gap))
    return (
        f"the fast path disagreed on a probe listing ({got[worst]:.2f} vs "
        f"{expected[worst]:.2f}: {probes[worst].model_dump(exclude_none=True)})"
    )


def compile_fast_path(model: Any) -> tuple[FastScorer | None, str]:
    """The fast scorer if it reproduces ``model`` on probe listings, and why (not)."""
    try:
        scorer = FastScorer(model)
    except Unsupported as exc:
        return None, f"pipeline: {exc} is not mirrored by the fast path"
    probes = probe_listings(scorer.vocabulary)
    problem = check(scorer, model, probes)
    if problem is not None:
        return None, f"pipeline: {problem}"
    matched = f"matched the pipeline on {len(probes)} probe listings"
    walked = scorer.walk_trees(probes)
    return scorer, f"fast path ({matched}{'' if walked is None else '; ' + walked})"
