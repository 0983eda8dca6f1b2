"""Scoring validated listings without pandas, for the boosted-tree models training produces.

Why: the logged model is a scikit-learn pipeline over pandas (``experiments.features``) that
costs ~10-25 ms for a single row on this hardware, almost all of it per-call pandas overhead
(building frames, ``ColumnTransformer`` bookkeeping); the trees themselves answer in tens of
microseconds. The serving target is a p99 of 10 ms per request.

What: :class:`FastScorer` reads the *fitted state* of the pipeline (category lists, smoothed
means, the booster) and applies it to each listing with plain Python, then calls the booster on
one float matrix. It mirrors ``experiments.features.model_input`` and ``ListingFrame`` for
already-validated fields; that mirror is the one duplicated piece of logic in serving, so it is
guarded twice: :func:`compile_fast_path` refuses any pipeline shape it does not recognise, and
checks its answers against the pipeline's own ``predict`` on probe listings drawn from the
model's vocabulary before it is used. Any mismatch, and serving uses the pipeline (slower,
never different).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any, cast

import numpy as np
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from experiments.features import (
    DERIVED_COLUMNS,
    CategoryCodes,
    ListingFrame,
    SmoothedMeanEncoder,
    model_input,
)
from serving.schema import Listing
from tasador.core.columns import STATUSES

PROBE_ROWS = 96
RELATIVE_TOLERANCE = 1e-6
_MISSING = math.nan


class Unsupported(Exception):
    """The model is not a pipeline this module knows how to mirror."""


def derived(listing: Listing) -> dict[str, Any]:
    """``ListingFrame``'s columns for one validated listing (see the module doc)."""
    state = listing.state
    city = listing.city.lower() if listing.city else None
    zip_code = listing.zip_code
    sold = listing.prev_sold_date
    return {
        "bed": _MISSING if listing.bed is None else float(listing.bed),
        "bath": _MISSING if listing.bath is None else float(listing.bath),
        "acre_lot": _MISSING if listing.acre_lot is None else listing.acre_lot,
        "house_size": _MISSING if listing.house_size is None else listing.house_size,
        "prev_sold_year": _MISSING
        if sold is None
        else sold.year + (sold.timetuple().tm_yday - 1) / 366.0,
        "status": listing.status,
        "state": state,
        "zip_code_3": zip_code[:3] if zip_code else None,
        "city": f"{state or '?'}|{city}" if city else None,
        "zip_code": zip_code,
        "brokered_by": None if listing.brokered_by is None else str(listing.brokered_by),
    }


# One output column: derived row -> float.
Feature = Callable[[dict[str, Any]], float]


def _passthrough(column: str) -> Feature:
    return lambda row: row[column]


def _lookup(column: str, table: dict[Any, float], default: float) -> Feature:
    get = table.get
    return lambda row: get(row[column], default)


def _is_passthrough(step: Any) -> bool:
    # Fitted column transformers hold "passthrough" as an identity FunctionTransformer.
    return (isinstance(step, str) and step == "passthrough") or (
        type(step) is FunctionTransformer and step.func is None
    )


def _features_of(encode: ColumnTransformer) -> list[Feature]:
    features: list[Feature] = []
    for name, step, columns in encode.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        if _is_passthrough(step):
            features += [_passthrough(c) for c in columns]
        elif type(step) is CategoryCodes:
            for c in columns:
                codes = {value: float(i) for i, value in enumerate(step.categories_[c])}
                features.append(_lookup(c, codes, _MISSING))
        elif type(step) is SmoothedMeanEncoder:
            for c in columns:
                if c != step.size_column:
                    features.append(_lookup(c, step.means_[c].to_dict(), step.prior_))
        else:
            raise Unsupported(f"encoding step {name!r} ({type(step).__name__})")
    if len(features) != len(encode.get_feature_names_out()):
        raise Unsupported("the encoding's output columns are not the ones mirrored")
    return features


Predict = Callable[[np.ndarray], np.ndarray]


def _booster_of(estimator: Any) -> Predict:
    # One thread per call: requests come one or a few rows at a time, and a thread pool woken for
    # each cost 5x the CPU of the prediction itself (benchmarks/serve.py); concurrency comes from
    # the requests, not from inside one of them.
    kind = f"{type(estimator).__module__}.{type(estimator).__name__}"
    if kind == "xgboost.sklearn.XGBRegressor":
        estimator.set_params(n_jobs=1)  # the served copy, loaded for this process only
        # numpy in: XGBoost's in-place prediction, codes as categories
        return cast(Predict, estimator.predict)
    if kind == "lightgbm.sklearn.LGBMRegressor":
        return functools.partial(estimator.booster_.predict, num_threads=1)
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
        self._features = _features_of(encode)
        self._booster = _booster_of(estimator)
        self._inverse = model.inverse_func or (lambda y: y)
        self.vocabulary = _vocabulary(encode)

    def predict(self, listings: Sequence[Listing]) -> np.ndarray:
        features = self._features
        matrix = np.array(
            [[f(row) for f in features] for row in map(derived, listings)], dtype=np.float64
        )
        return np.asarray(self._inverse(self._booster(matrix)), dtype=np.float64).ravel()


def _vocabulary(encode: ColumnTransformer) -> dict[str, list[Any]]:
    """Values the fitted encoders know, per derived column (to draw probe listings from)."""
    known: dict[str, set[Any]] = {c: set() for c in DERIVED_COLUMNS}
    for _, step, columns in encode.transformers_:
        if type(step) is CategoryCodes:
            for c in columns:
                known[c].update(step.categories_[c])
        elif type(step) is SmoothedMeanEncoder:
            for c in columns:
                if c != step.size_column:
                    known[c].update(step.means_[c].index)
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


def compile_fast_path(model: Any) -> tuple[FastScorer | None, str]:
    """The fast scorer if it reproduces ``model`` on probe listings, and why (not)."""
    try:
        scorer = FastScorer(model)
    except Unsupported as exc:
        return None, f"pipeline: {exc} is not mirrored by the fast path"
    probes = probe_listings(scorer.vocabulary)
    expected, got = pipeline_prices(model, probes), scorer.predict(probes)
    if not np.allclose(got, expected, rtol=RELATIVE_TOLERANCE, atol=0.0):
        worst = int(np.argmax(np.abs(got - expected) / np.abs(expected)))
        return None, (
            f"pipeline: the fast path disagreed on a probe listing ({got[worst]:.2f} vs "
            f"{expected[worst]:.2f}: {probes[worst].model_dump(exclude_none=True)})"
        )
    return scorer, f"fast path (matched the pipeline on {len(probes)} probe listings)"
