"""Typed records of the loop's state, shared by `tasador status`, the demo and the UI.

Two verdicts, two names: a batch has a *retrain decision* (retrain or skip, with its reason); a
model version has a *promotion verdict* (promoted or kept out, by champion/challenger).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RetrainDecisionStatus(_Record):
    """The stored retrain decision of one batch."""

    id: int
    verdict: Literal["retrain", "skip"]
    reason: str
    decided_at: datetime


class BatchStatus(_Record):
    """One batch as RAW received it, what cleaning did to it and its retrain decision."""

    batch_id: int
    group: int
    day: str | None
    batch_number: int
    received_at: datetime
    rows_received: int  # every row of the payload, stored as columns or rejected
    rows_clean: int | None  # None until cleaned
    dropped: dict[str, int] | None  # rows dropped, per cleaning rule
    fixed: dict[str, int] | None  # values fixed, per cleaning rule (rules that fixed any)
    payload_sha256: str
    decision: RetrainDecisionStatus | None
    rows_rejected: int = 0  # received rows kept in RAW's rejected_rows (not cleaned)


class GapStatus(_Record):
    """A batch number the data API skipped for a group and day, not recovered yet."""

    group: int
    day: str | None
    batch_number: int
    detected_at: datetime


class VersionStatus(_Record):
    """One registered model version: lineage, holdout metrics and its promotion verdict."""

    version: int
    aliases: list[str]
    production: bool
    batch_ids: list[int]
    study: str | None
    family: str | None
    holdout: dict[str, float]  # metric name (rmsle, mae, ...) -> value on the shared holdout
    retrain_reason: str | None
    promoted: bool | None  # None: no champion/challenger verdict recorded
    verdict: str | None  # the promotion verdict in one sentence
    decided_at: datetime | None  # when the verdict was given
    previous_version: int | None  # production when the verdict was given
    run_id: str | None
    # The verdict's evidence (experiments.gate): the interval of the holdout RMSLE improvement
    # over that production version, and the rule that decided; None when there was none.
    improvement: tuple[float, float] | None = None
    guard: str | None = None


class AliasMoveStatus(_Record):
    """One move of the production alias: a promotion or a rollback, and why."""

    moved_at: datetime
    version: int
    previous_version: int | None
    cause: Literal["promotion", "rollback"]
    reason: str


class StatusReport(_Record):
    """Everything `tasador status` prints."""

    raw_db: str
    clean_db: str
    batches: list[BatchStatus]
    gaps: list[GapStatus] = []  # skipped batch numbers: `tasador recover --group N` fills them
    mlflow_tracking_uri: str | None = None
    optuna_storage: str | None = None
    model_name: str | None = None
    models: list[VersionStatus] | None = None
    alias_history: list[AliasMoveStatus] | None = None  # the alias history MLflow lacks
