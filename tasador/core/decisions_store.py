"""Retrain decisions in the CLEAN database: one row per batch, with its evidence as JSONB.

The decision's id is what training runs and model versions carry in their
``retrain_decision_id`` tag (``tasador.core.lineage``). Saving is idempotent per batch: the first
decision stored for a batch stays unless the caller asks to replace it, which keeps the id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast, get_args

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from tasador.core.errors import BadInput
from tasador.core.tables.clean import decisions

Verdict = Literal["retrain", "skip"]


@dataclass(frozen=True)
class Decision:
    """A stored retrain-or-skip decision on a batch, with its reason and evidence."""

    id: int
    batch_id: int
    verdict: Verdict
    reason: str
    evidence: dict[str, Any]  # tasador.loop.decide.Evidence as JSON
    created_at: datetime


def save(
    engine: sa.Engine,
    batch_id: int,
    verdict: Verdict,
    reason: str,
    evidence: dict[str, Any],
    replace: bool = False,
) -> Decision:
    """Store the decision for a batch and return the stored row.

    Without ``replace``, an existing decision for the batch wins and is returned unchanged (so a
    retried task or a concurrent run cannot record a second, different verdict)."""
    if verdict not in get_args(Verdict):
        raise BadInput(f"verdict must be 'retrain' or 'skip', not {verdict!r}")
    if not reason.strip():
        raise BadInput("a decision needs a reason")
    values = {"batch_id": batch_id, "verdict": verdict, "reason": reason, "evidence": evidence}
    insert = postgresql.insert(decisions).values(**values)
    if replace:
        statement = insert.on_conflict_do_update(
            index_elements=["batch_id"],
            set_={**values, "created_at": sa.func.now()},
        )
    else:
        statement = insert.on_conflict_do_nothing(index_elements=["batch_id"])
    with engine.begin() as conn:
        conn.execute(statement)
        row = conn.execute(sa.select(decisions).where(decisions.c.batch_id == batch_id)).one()
    return _decision(row)


def get(engine: sa.Engine, batch_id: int) -> Decision | None:
    """The decision on a batch, or None when the batch has none."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(decisions).where(decisions.c.batch_id == batch_id)
        ).one_or_none()
    return None if row is None else _decision(row)


def get_by_id(engine: sa.Engine, decision_id: int) -> Decision | None:
    """The decision with this id, or None when there is none."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(decisions).where(decisions.c.id == decision_id)).one_or_none()
    return None if row is None else _decision(row)


def latest_by_batch(engine: sa.Engine) -> dict[int, Decision]:
    """Each batch's decision (one per batch), keyed by batch id, in batch order."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(decisions).order_by(decisions.c.batch_id)).all()
    return {row.batch_id: _decision(row) for row in rows}


def last_decided_at(engine: sa.Engine) -> datetime | None:
    """When the newest decision (on any batch) was taken; None before the first."""
    with engine.connect() as conn:
        found = conn.execute(sa.select(sa.func.max(decisions.c.created_at))).scalar_one()
    return cast(datetime | None, found)


def _decision(row: sa.Row[Any]) -> Decision:
    # The dataclass's fields are the table's columns, by name.
    return Decision(**row._mapping)
