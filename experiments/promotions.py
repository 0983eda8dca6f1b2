"""The audit of champion/challenger decisions: which version was production, from when.

MLflow keeps no history of aliases (mlflow#2169): moving ``@production`` forgets where it
pointed before. Every decision, promoted or not, is therefore a row of ``model_promotions`` in
the CLEAN database, written in the same transaction that moves the alias (the alias call runs
inside the transaction and a failure rolls the row back), one row per challenger version, so
re-running a decision changes nothing. "Which version served at time T" is the latest promoted
row at or before T (:func:`production_at`). Model versions also get ``promoted`` /
``promoted_at`` tags for readers of the MLflow UI, but the table is the record.

**Compare-and-set.** Two trainings finishing together must not both compare with the same old
production model and then race to move the alias (the later move wins, even if it is the worse
model). :func:`decide` therefore takes a transaction-scoped PostgreSQL advisory lock keyed by the
model name on the CLEAN database, then, holding it, reads the production version, compares,
writes the row and moves the alias; the lock is released by the commit (or rollback), so a
crashed decision never leaves it held. Every promotion decision of a model is serialized; the
second one compares with whatever the first left in production.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from tasador.core.errors import Conflict

metadata = sa.MetaData()

model_promotions = sa.Table(
    "model_promotions",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "decided_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("challenger_version", sa.Integer, nullable=False),
    sa.Column("previous_version", sa.Integer),  # production before the decision (None: none)
    sa.Column("promoted", sa.Boolean, nullable=False),
    sa.Column("challenger_rmsle", sa.Float(53), nullable=False),
    sa.Column("previous_rmsle", sa.Float(53)),
    sa.Column("margin", sa.Float(53), nullable=False),
    sa.Column("holdout_rows", sa.Integer, nullable=False),
    sa.Column("study_name", sa.Text, nullable=False),
    sa.Column("retrain_decision_id", sa.BigInteger),
    sa.Column("summary", sa.Text, nullable=False),
    sa.UniqueConstraint("model_name", "challenger_version", name="one_decision_per_version"),
)


# The advisory lock's first key: a constant naming "promotion decisions", so the lock cannot
# collide with another use of advisory locks keyed by hashtext of the same text.
LOCK_CLASS = 1_735_355_650


@dataclass(frozen=True)
class Judgement:
    """What a comparison concluded, made while the promotion lock is held."""

    previous_version: int | None  # production when the comparison ran (None: nothing served)
    promoted: bool
    challenger_rmsle: float  # NaN when the challenger's output was not finite
    previous_rmsle: float | None
    summary: str


@dataclass(frozen=True)
class Promotion:
    """A stored champion/challenger verdict: both versions, their holdout RMSLEs and the margin."""

    id: int
    decided_at: datetime
    model_name: str
    challenger_version: int
    previous_version: int | None
    promoted: bool
    challenger_rmsle: float
    previous_rmsle: float | None
    margin: float
    holdout_rows: int
    study_name: str
    retrain_decision_id: int | None
    summary: str


def _promotion(row: sa.Row[Any]) -> Promotion:
    return Promotion(**row._mapping)


def get(engine: sa.Engine, model_name: str, challenger_version: int) -> Promotion | None:
    """The promotion decision of a model version, or None when there is none."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(model_promotions).where(
                model_promotions.c.model_name == model_name,
                model_promotions.c.challenger_version == challenger_version,
            )
        ).one_or_none()
    return _promotion(row) if row else None


def record(
    engine: sa.Engine,
    *,
    model_name: str,
    challenger_version: int,
    previous_version: int | None,
    promoted: bool,
    challenger_rmsle: float,
    previous_rmsle: float | None,
    margin: float,
    holdout_rows: int,
    study_name: str,
    retrain_decision_id: int | None,
    summary: str,
    move_alias: Callable[[], None],
) -> Promotion:
    """Store the decision and, when promoted, call ``move_alias`` inside the same transaction.

    A decision already stored for this version wins: it is returned and nothing moves.
    """
    with engine.begin() as conn:
        inserted = conn.execute(
            postgresql.insert(model_promotions)
            .values(
                model_name=model_name,
                challenger_version=challenger_version,
                previous_version=previous_version,
                promoted=promoted,
                challenger_rmsle=challenger_rmsle,
                previous_rmsle=previous_rmsle,
                margin=margin,
                holdout_rows=holdout_rows,
                study_name=study_name,
                retrain_decision_id=retrain_decision_id,
                summary=summary,
            )
            .on_conflict_do_nothing(constraint="one_decision_per_version")
            .returning(*model_promotions.c)
        ).one_or_none()
        if inserted is not None and promoted:
            move_alias()
    if inserted is not None:
        return _promotion(inserted)
    stored = get(engine, model_name, challenger_version)
    if stored is None:
        raise Conflict(f"decision on {model_name} v{challenger_version} vanished")
    return stored


def decide(
    engine: sa.Engine,
    *,
    model_name: str,
    challenger_version: int,
    margin: float,
    holdout_rows: int,
    study_name: str,
    retrain_decision_id: int | None,
    judge: Callable[[], Judgement],
    move_alias: Callable[[], None],
) -> Promotion:
    """Compare and set, serialized per model: the stored decision of this version, or a new one.

    Under ``pg_advisory_xact_lock`` on the model name: if this version has a decision, it is
    returned and nothing moves; otherwise ``judge`` reads the production version and compares
    (so it sees every earlier decision's alias move), the row is written and, when promoted,
    ``move_alias`` runs, all before the commit releases the lock. A failure rolls the row back.
    """
    with engine.begin() as conn:
        conn.execute(
            sa.select(sa.func.pg_advisory_xact_lock(LOCK_CLASS, sa.func.hashtext(model_name)))
        )
        stored = conn.execute(
            sa.select(model_promotions).where(
                model_promotions.c.model_name == model_name,
                model_promotions.c.challenger_version == challenger_version,
            )
        ).one_or_none()
        if stored is not None:  # decided by an earlier (or a concurrent) run of this study
            return _promotion(stored)
        verdict = judge()
        inserted = conn.execute(
            sa.insert(model_promotions)
            .values(
                model_name=model_name,
                challenger_version=challenger_version,
                previous_version=verdict.previous_version,
                promoted=verdict.promoted,
                challenger_rmsle=verdict.challenger_rmsle,
                previous_rmsle=verdict.previous_rmsle,
                margin=margin,
                holdout_rows=holdout_rows,
                study_name=study_name,
                retrain_decision_id=retrain_decision_id,
                summary=verdict.summary,
            )
            .returning(*model_promotions.c)
        ).one()
        if verdict.promoted:
            move_alias()
    return _promotion(inserted)


def history(engine: sa.Engine, model_name: str) -> list[Promotion]:
    """Every decision for ``model_name``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(model_promotions)
            .where(model_promotions.c.model_name == model_name)
            .order_by(model_promotions.c.decided_at, model_promotions.c.id)
        )
        return [_promotion(r) for r in rows]


def production_at(engine: sa.Engine, model_name: str, when: datetime) -> int | None:
    """The version that was production at ``when`` (None before the first promotion)."""
    promoted = [p for p in history(engine, model_name) if p.promoted and p.decided_at <= when]
    return promoted[-1].challenger_version if promoted else None
