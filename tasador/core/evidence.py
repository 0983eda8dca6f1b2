"""The evidence behind a retrain decision: pure statistics on two frames, no I/O.

What each check measures and why is in ``tasador.loop.decide``; the sentences are in
``tasador.core.narrative``.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal, Protocol, TypedDict

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from tasador.core import drift
from tasador.core.columns import (
    CATEGORICAL_COLUMNS,
    DATE_COLUMNS,
    NUMERIC_COLUMNS,
    RAW_COLUMNS,
    TARGET,
)
from tasador.core.config import DriftSettings
from tasador.core.decisions_store import Verdict
from tasador.core.errors import Conflict
from tasador.core.metrics import rmsle
from tasador.core.sampling import at_most

FEATURE_COLUMNS: tuple[str, ...] = tuple(c for c in RAW_COLUMNS if c != TARGET)
NUMERIC_FEATURES: tuple[str, ...] = (*NUMERIC_COLUMNS, *DATE_COLUMNS)
SAMPLE_SEED = 0

# "empty" is kept for decisions stored before "too_few_rows" (which covers zero rows) existed.
Basis = Literal["compared", "baseline", "already_trained", "too_few_rows", "empty"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Thresholds(_Frozen):
    """The drift and model-error limits a decision applies, taken from the settings."""

    psi: float
    p_value: float
    ks_min_statistic: float
    unseen_share: float
    model_error_ratio: float
    sample_rows: int
    model_rows: int
    # Clean rows a batch needs to be judged or trained on; 1 for decisions stored before the
    # setting existed (they only refused batches without any row).
    min_clean_rows: int = 1

    @classmethod
    def from_settings(cls, drift: DriftSettings) -> Thresholds:
        return cls(
            psi=drift.drift_psi_threshold,
            p_value=drift.drift_p_value,
            ks_min_statistic=drift.drift_ks_min_statistic,
            unseen_share=drift.drift_unseen_share,
            model_error_ratio=drift.drift_model_error_ratio,
            sample_rows=drift.drift_sample_rows,
            model_rows=drift.drift_model_rows,
            min_clean_rows=drift.decide_min_clean_rows,
        )


class CategoryMove(_Frozen):
    """One category's share in the reference and in the current batch."""

    category: str
    reference_share: float
    current_share: float


class FeatureShift(_Frozen):
    """How one column's distribution moved from reference to batch, and whether that is drift."""

    column: str
    kind: Literal["numeric", "categorical"]
    psi: float | None  # None when a side has no value at all to compare
    psi_p_value: float | None  # chi-square on the PSI buckets
    ks_statistic: float | None = None  # numeric only
    ks_p_value: float | None = None
    moved: bool
    reference_median: float | None = None  # numeric only
    current_median: float | None = None
    reference_missing: float  # share of rows without a value
    current_missing: float
    largest_moves: list[CategoryMove] = []  # categorical only: buckets whose share moved most


class _ShiftCommon(TypedDict):
    """The fields of a FeatureShift shared by both kinds."""

    column: str
    psi: float | None
    psi_p_value: float | None
    reference_missing: float
    current_missing: float


class UnseenCategories(_Frozen):
    """Batch values of a column the reference never had; fires when well above chance."""

    column: str
    share: float
    expected_share: float
    fired: bool
    top: list[tuple[str, int]]

    @property
    def excess(self) -> float:
        return self.share - self.expected_share


class ModelCheck(_Frozen):
    """The production model's batch RMSLE against its holdout RMSLE; fires on too high a ratio,
    and on a model whose output is not a finite number (it cannot be judged, only replaced)."""

    model_version: str
    rows_scored: int
    # None: not a finite number. JSON (and so the stored evidence) has no NaN, and a model that
    # prices a listing NaN or infinite has no meaningful error to report.
    batch_rmsle: float | None
    holdout_rmsle: float | None
    holdout_source: Literal["run_metric", "reference_holdout"]
    ratio: float | None  # None when either RMSLE is not a finite number
    non_finite_rows: int = 0  # batch rows the model priced NaN or infinite
    fired: bool

    @property
    def broken(self) -> bool:
        """The model's output is not finite: on this batch, or on its own holdout."""
        return self.ratio is None


class BatchInfo(_Frozen):
    """The batch being decided on: its id and row counts before and after cleaning."""

    batch_id: int
    rows_in: int
    rows_out: int


class ReferenceInfo(_Frozen):
    """What a batch is compared with: the production model's training batches, or the baseline."""

    batch_ids: list[int]
    rows: int | None = None  # training rows compared with; None when not read (already trained)
    model_version: str | None  # None: no production model yet, the baseline batch is the reference


class LiveDrift(_Frozen):
    """The requests served in a window against the production model's training rows
    (tasador.loop.monitor), with the thresholds of decisions; too few rows: not compared."""

    model_version: str
    reference_batch_ids: list[int]
    reference_rows: int
    after_request_id: int  # the window is (after_request_id, through_request_id]
    through_request_id: int
    rows: int  # requests (listings) in the window
    min_rows: int  # rows a window needs to be compared (TASADOR_LIVE_MIN_ROWS)
    thresholds: Thresholds
    features: list[FeatureShift] = []
    unseen: list[UnseenCategories] = []
    check_id: int | None = None  # set once stored
    checked_at: datetime | None = None

    @property
    def compared(self) -> bool:
        return self.rows >= self.min_rows

    @property
    def moved(self) -> list[FeatureShift]:
        """The features that moved, largest PSI first."""
        return sorted((f for f in self.features if f.moved), key=lambda f: -(f.psi or 0))

    @property
    def alarm(self) -> bool:
        return self.compared and (bool(self.moved) or any(u.fired for u in self.unseen))

    @property
    def drift_share(self) -> float | None:
        """Share of the compared features (and unseen-category checks) that fired."""
        checks = len(self.features) + len(self.unseen)
        if not self.compared or checks == 0:
            return None
        return (len(self.moved) + sum(u.fired for u in self.unseen)) / checks


class Evidence(_Frozen):
    """Everything a retrain-or-skip decision rests on; ``basis`` says how far it compared."""

    basis: Basis
    batch: BatchInfo
    reference: ReferenceInfo | None = None
    thresholds: Thresholds
    forced: bool = False
    features: list[FeatureShift] = []
    target: FeatureShift | None = None
    unseen: list[UnseenCategories] = []
    model: ModelCheck | None = None
    # The latest live drift check since the previous decision that raised an alarm: cited in
    # the reason, not a check of the batch (the verdict rests on the batch's own evidence).
    live: LiveDrift | None = None

    @property
    def fired(self) -> bool:
        return (
            any(f.moved for f in self.features)
            or (self.target is not None and self.target.moved)
            or any(u.fired for u in self.unseen)
            or (self.model is not None and self.model.fired)
        )


# --- the statistics, composed -------------------------------------------------------------


def feature_shift(
    column: str, reference: pd.Series, current: pd.Series, thresholds: Thresholds
) -> FeatureShift:
    """PSI (and KS for numbers) on the values present; missing shares reported beside them."""
    numeric = column in NUMERIC_FEATURES or column == TARGET
    buckets = (
        drift.numeric_buckets(reference, current)
        if numeric
        else drift.categorical_buckets(reference, current)
    )
    comparable = buckets.reference.sum() > 0 and buckets.current.sum() > 0
    psi = drift.psi(buckets) if comparable else None
    psi_p = drift.chi_square(buckets).p_value if comparable else None
    moved = (
        psi is not None
        and psi_p is not None
        and psi >= thresholds.psi
        and psi_p < thresholds.p_value
    )
    common: _ShiftCommon = {
        "column": column,
        "psi": psi,
        "psi_p_value": psi_p,
        "reference_missing": drift.missing_share(reference),
        "current_missing": drift.missing_share(current),
    }
    if not numeric:
        return FeatureShift(
            **common,
            kind="categorical",
            moved=moved,
            largest_moves=_largest_moves(buckets) if comparable else [],
        )
    ks = drift.ks_two_sample(reference, current)
    if ks is not None:
        moved = moved or (
            ks.statistic >= thresholds.ks_min_statistic and ks.p_value < thresholds.p_value
        )
    return FeatureShift(
        **common,
        kind="numeric",
        moved=moved,
        ks_statistic=ks.statistic if ks else None,
        ks_p_value=ks.p_value if ks else None,
        reference_median=drift.median(reference),
        current_median=drift.median(current),
    )


def _largest_moves(buckets: drift.Buckets, top: int = 3) -> list[CategoryMove]:
    ref = buckets.reference / max(buckets.reference.sum(), 1)
    cur = buckets.current / max(buckets.current.sum(), 1)
    order = np.argsort(-np.abs(cur - ref), kind="stable")[:top]
    return [
        CategoryMove(
            category=buckets.labels[i], reference_share=float(ref[i]), current_share=float(cur[i])
        )
        for i in order
        if cur[i] != ref[i]
    ]


def unseen_categories(
    column: str, reference: pd.Series, current: pd.Series, thresholds: Thresholds
) -> UnseenCategories:
    """The unseen-category check of one column, fired against ``thresholds.unseen_share``."""
    found = drift.unseen(reference, current)
    return UnseenCategories(
        column=column,
        share=found.share,
        expected_share=found.expected_share,
        fired=found.share - found.expected_share > thresholds.unseen_share,
        top=found.top,
    )


def compare_features(
    reference: pd.DataFrame, current: pd.DataFrame, thresholds: Thresholds
) -> tuple[list[FeatureShift], list[UnseenCategories]]:
    """Feature shifts and unseen categories of ``current`` against ``reference`` (no target:
    live requests have no price)."""
    if reference.empty or current.empty:
        raise ValueError("comparing needs rows on both sides")
    ref_sample = at_most(reference, thresholds.sample_rows, SAMPLE_SEED)
    cur_sample = at_most(current, thresholds.sample_rows, SAMPLE_SEED)
    features = [
        feature_shift(c, ref_sample[c], cur_sample[c], thresholds)
        for c in (*NUMERIC_FEATURES, *CATEGORICAL_COLUMNS)
    ]
    # Every reference row counts here: a sample would miss rare values and call them new.
    unseen = [
        unseen_categories(c, reference[c], current[c], thresholds) for c in CATEGORICAL_COLUMNS
    ]
    return features, unseen


def compare(
    reference: pd.DataFrame, current: pd.DataFrame, thresholds: Thresholds
) -> tuple[list[FeatureShift], FeatureShift, list[UnseenCategories]]:
    """Feature shifts, target shift and unseen categories of ``current`` against ``reference``."""
    features, unseen = compare_features(reference, current, thresholds)
    ref_sample = at_most(reference, thresholds.sample_rows, SAMPLE_SEED)
    cur_sample = at_most(current, thresholds.sample_rows, SAMPLE_SEED)
    target = feature_shift(TARGET, ref_sample[TARGET], cur_sample[TARGET], thresholds)
    return features, target, unseen


class Predictor(Protocol):
    """Anything with a ``predict`` on a listings frame (an MLflow pyfunc model, say)."""

    def predict(self, data: pd.DataFrame) -> Any: ...


def _predictions(model: Predictor, scored: pd.DataFrame) -> np.ndarray:
    predicted = np.asarray(model.predict(scored.loc[:, list(FEATURE_COLUMNS)]), dtype=float)
    return predicted.reshape(-1)


def _error(scored: pd.DataFrame, predictions: np.ndarray) -> float:
    # rmsle clips -inf to 0, which would hide a broken prediction behind a finite score.
    if not np.isfinite(predictions).all():
        return math.nan
    return rmsle(scored[TARGET].to_numpy(), predictions)


def model_error(model: Predictor, frame: pd.DataFrame, max_rows: int) -> tuple[float, int]:
    """RMSLE of the model's price predictions on (a sample of) ``frame``, and the rows scored.

    NaN when any prediction is not finite."""
    scored = at_most(frame, max_rows, SAMPLE_SEED)
    return _error(scored, _predictions(model, scored)), len(scored)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def model_check(
    model: Predictor,
    version: str,
    holdout_rmsle: float,
    holdout_source: Literal["run_metric", "reference_holdout"],
    current: pd.DataFrame,
    thresholds: Thresholds,
) -> ModelCheck:
    """Score ``model`` on the batch against its holdout RMSLE.

    Fires when the ratio is too high, and when either error is not finite (a model that priced
    its holdout or this batch NaN or infinite is broken, and must not blind the check). Raises
    Conflict on a finite holdout RMSLE that is not positive: no ratio can be formed with it."""
    if math.isfinite(holdout_rmsle) and not holdout_rmsle > 0:
        raise Conflict(f"model version {version} has a holdout RMSLE of {holdout_rmsle}")
    scored = at_most(current, thresholds.model_rows, SAMPLE_SEED)
    predictions = _predictions(model, scored)
    batch_rmsle = _error(scored, predictions)
    finite = math.isfinite(batch_rmsle) and math.isfinite(holdout_rmsle)
    ratio = batch_rmsle / holdout_rmsle if finite else None
    return ModelCheck(
        model_version=version,
        rows_scored=len(scored),
        batch_rmsle=_finite(batch_rmsle),
        holdout_rmsle=_finite(holdout_rmsle),
        holdout_source=holdout_source,
        ratio=ratio,
        non_finite_rows=int((~np.isfinite(predictions)).sum()),
        fired=ratio is None or ratio > thresholds.model_error_ratio,
    )


def verdict_of(evidence: Evidence) -> Verdict:
    """Retrain on the baseline batch, when forced or when any check fired; skip otherwise
    (a batch with too few clean rows, or one the production model was trained on, is skipped)."""
    if evidence.basis == "baseline" or evidence.forced:
        return "retrain"
    if evidence.basis in ("already_trained", "too_few_rows", "empty"):
        return "skip"
    return "retrain" if evidence.fired else "skip"
