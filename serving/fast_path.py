"""Scoring validated listings without pandas, for every model family training produces.

Why: the logged model is a scikit-learn pipeline over pandas (``experiments.features``) that
costs 10-45 ms for a single row on this hardware, almost all of it per-call overhead of pandas and
``ColumnTransformer`` bookkeeping; the estimators themselves answer in microseconds. The serving
target is a p99 of 10 ms per request, for whichever family the search picked.

What: :func:`compile_fast_path` reads the *fitted state* of the pipeline once per loaded version
and compiles its encoding step into blocks of array lookups and arithmetic:

- numeric columns: ``passthrough``, or the linear encoding's ``log1p`` -> median imputation
  (with missing indicators) -> standard scaling, as constants (medians, means, scales);
- text columns: one **category table** per column, built by running the fitted step itself
  (category codes, smoothed means, one-hot, each possibly followed by a scaler) on the column's
  known values, the missing value and an unseen one; a row's block is then one table row.
  This needs each output column to depend on a single input column, which is checked.

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
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, cast

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from experiments.features import (
    DERIVED_COLUMNS,
    HIGH_CARDINALITY,
    LOW_CARDINALITY,
    CategoryCodes,
    ListingFrame,
    SmoothedMeanEncoder,
    model_input,
)
from serving.batch import NUMERIC, ListingColumns
from serving.schema import Listing
from serving.tree_walk import NotWalkable, Trees, estimator_kind, flatten, is_ensemble
from tasador.core.columns import STATUSES

PROBE_ROWS = 256
# Requests of at most this many listings walk the trees (serving.tree_walk); larger ones go
# through the library's own predict, which costs less per row once its per-call cost is paid.
WALK_MAX_ROWS = 16
RELATIVE_TOLERANCE = 1e-6
TEXT_COLUMNS = frozenset((*LOW_CARDINALITY, *HIGH_CARDINALITY))
_UNSEEN = "\x00unseen"  # no validated listing derives this value (control characters refused)


class Unsupported(Exception):
    """The model is not a pipeline this module knows how to mirror."""


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


# --- compiled blocks of the encoding step --------------------------------------------------

Columns = dict[str, Any]  # derived column -> values (list or float array)


class Block:
    """Fills some output columns of the feature matrix from the derived columns."""

    def fill(self, columns: Columns, out: np.ndarray) -> None:
        raise NotImplementedError


@dataclass
class CategoryTable(Block):
    """One text column -> a row of ``table`` (known values, then None, then unseen)."""

    column: str
    index: dict[Any, int]
    table: np.ndarray  # (len(index) + 1, len(positions)); the last row: unseen values
    positions: np.ndarray  # output columns it fills

    def fill(self, columns: Columns, out: np.ndarray) -> None:
        get, unseen = self.index.get, len(self.index)
        rows = np.fromiter((get(v, unseen) for v in columns[self.column]), np.intp)
        out[:, self.positions] = self.table[rows]


@dataclass
class Numeric(Block):
    """Numeric columns through ``log1p``, imputation, indicators and scaling, as constants."""

    columns: list[str]
    positions: np.ndarray
    log1p: bool = False
    fill_values: np.ndarray | None = None  # imputed value per column
    indicators: np.ndarray | None = None  # columns that get a missing indicator
    mean: np.ndarray | None = None  # of the scaler, over the block's outputs
    scale: np.ndarray | None = None

    def fill(self, columns: Columns, out: np.ndarray) -> None:
        x = np.array([columns[c] for c in self.columns], dtype=np.float64).T
        if self.log1p:
            x = np.log1p(x)
        if self.fill_values is not None:
            missing = np.isnan(x)
            x = np.where(missing, self.fill_values, x)
            if self.indicators is not None:
                x = np.hstack([x, missing[:, self.indicators].astype(np.float64)])
        if self.mean is not None:
            x = x - self.mean
        if self.scale is not None:
            x = x / self.scale
        out[:, self.positions] = x


def _is_passthrough(step: Any) -> bool:
    # Fitted column transformers hold "passthrough" as an identity FunctionTransformer.
    return (isinstance(step, str) and step == "passthrough") or (
        type(step) is FunctionTransformer and step.func is None
    )


def _numeric(columns: list[str], step: Any, positions: np.ndarray) -> Numeric:
    block = Numeric(list(columns), positions)
    steps = [] if _is_passthrough(step) else _steps(step)
    for part in steps:
        if (
            type(part) is FunctionTransformer
            and part.func is np.log1p
            and not part.kw_args
            and not block.log1p
        ):
            block.log1p = True
        elif type(part) is SimpleImputer and block.fill_values is None and block.mean is None:
            if not (isinstance(part.missing_values, float) and math.isnan(part.missing_values)):
                raise Unsupported("an imputer of values other than NaN")
            fill = np.asarray(part.statistics_, dtype=np.float64)
            if np.isnan(fill).any():
                raise Unsupported("an imputer that drops empty columns")
            block.fill_values = fill
            if part.indicator_ is not None:
                if part.indicator_.features != "missing-only":
                    raise Unsupported("a missing indicator over every column")
                block.indicators = np.asarray(part.indicator_.features_, dtype=np.intp)
        elif type(part) is StandardScaler and block.mean is None:
            block.mean = part.mean_ if part.with_mean else None
            block.scale = part.scale_ if part.with_std else None
        else:
            raise Unsupported(f"numeric step {type(part).__name__} of {columns}")
    width = len(columns) + (0 if block.indicators is None else len(block.indicators))
    if width != len(positions):
        raise Unsupported(f"numeric step of {columns}: {len(positions)} outputs, {width} mirrored")
    return block


def _steps(step: Any) -> list[Any]:
    return [s for _, s in step.steps] if type(step) is Pipeline else [step]


_TABLE_STEPS = (CategoryCodes, SmoothedMeanEncoder, OneHotEncoder, StandardScaler)


def _as_float(frame: pd.DataFrame) -> np.ndarray:
    """A step's output as floats; categoricals as their codes, missing (-1) as NaN."""
    parts = []
    for c in frame.columns:
        values = frame[c]
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = values.cat.codes.to_numpy().astype(np.float64)
            parts.append(np.where(codes < 0, np.nan, codes))
        else:
            parts.append(values.to_numpy(dtype=np.float64))
    return np.column_stack(parts)


def _known_values(step: Any, column: str) -> list[Any]:
    """The values a fitted text step tells apart in ``column``."""
    first = _steps(step)[0]
    if type(first) is CategoryCodes:
        return list(first.categories_[column])
    if type(first) is SmoothedMeanEncoder:
        return list(first.means_[column].index)
    if type(first) is OneHotEncoder:
        names = list(first.feature_names_in_)
        return [v for v in first.categories_[names.index(column)] if v is not None]
    raise Unsupported(f"text step {type(first).__name__}")


def _tables(step: Any, columns: list[str], positions: np.ndarray) -> list[CategoryTable]:
    """A table per text column of ``step``, built by running the fitted step on its values."""
    if not all(type(s) in _TABLE_STEPS for s in _steps(step)) or type(_steps(step)[0]) is (
        StandardScaler
    ):
        raise Unsupported(f"text step {type(step).__name__} of {columns}")
    text = [c for c in columns if c in TEXT_COLUMNS]

    def outputs(column: str, values: list[Any]) -> np.ndarray:
        frame = pd.DataFrame(
            {c: values if c == column else [None] * len(values) for c in text}, dtype=object
        )
        for c in columns:
            if c not in TEXT_COLUMNS:
                frame[c] = np.nan
        with warnings.catch_warnings():  # unknown categories are the point here
            warnings.simplefilter("ignore")
            return _as_float(step.transform(frame.loc[:, columns]))

    tables, owner = [], np.full(len(positions), -1)
    for i, column in enumerate(text):
        known = list(dict.fromkeys(_known_values(step, column)))
        values = [*known, None, _UNSEEN]
        result = outputs(column, values)
        if result.shape[1] != len(positions):
            raise Unsupported(f"text step of {columns}: {result.shape[1]} outputs")
        moves = ~np.all(np.isclose(result, result[:1], equal_nan=True, rtol=0, atol=0), axis=0)
        if (owner[moves] >= 0).any():
            raise Unsupported(f"text step of {columns}: outputs depend on several columns")
        owner[moves] = i
        tables.append((column, known, result, moves))
    blocks = []
    for i, (column, known, result, _) in enumerate(tables):
        mine = owner == i
        if i == 0:  # outputs no column moves are constant: the first table fills them
            mine |= owner < 0
        index = {value: n for n, value in enumerate([*known, None])}
        blocks.append(CategoryTable(column, index, result[:, mine], positions[mine]))
    return blocks


def _blocks(encode: ColumnTransformer) -> tuple[list[Block], int]:
    blocks: list[Block] = []
    width = 0
    for name, step, columns in encode.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        n = len(step.get_feature_names_out()) if not isinstance(step, str) else len(columns)
        positions = np.arange(width, width + n)
        width += n
        unknown = set(columns) - set(DERIVED_COLUMNS)
        if unknown:
            raise Unsupported(f"encoding step {name!r} of unknown columns {sorted(unknown)}")
        if all(c not in TEXT_COLUMNS for c in columns):
            blocks.append(_numeric(list(columns), step, positions))
        else:
            blocks += _tables(step, list(columns), positions)
    if width != len(encode.get_feature_names_out()):
        raise Unsupported("the encoding's output columns are not the ones mirrored")
    return blocks, width


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
        self._blocks, self._width = _blocks(encode)
        self._fitted = estimator
        self._estimator = _estimator(estimator)
        self._trees: Trees | None = None
        self._inverse = model.inverse_func or (lambda y: y)
        self.vocabulary = _vocabulary(self._blocks)

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


def _vocabulary(blocks: list[Block]) -> dict[str, list[Any]]:
    """Values the fitted encoders know, per derived column (to draw probe listings from)."""
    known: dict[str, set[Any]] = {}
    for block in blocks:
        if isinstance(block, CategoryTable):
            known.setdefault(block.column, set()).update(v for v in block.index if v is not None)
    return {c: sorted(v, key=str) for c, v in known.items() if v}


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
