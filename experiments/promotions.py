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

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from tasador.core.errors import BadInput, Conflict, NotFound
from tasador.core.tables.clean import alias_moves, model_promotions

# The advisory lock's first key: a constant naming "promotion decisions", so the lock cannot
# collide with another use of advisory locks keyed by hashtext of the same text.
LOCK_CLASS = 1_735_355_650

# What decided a verdict (``model_promotions.guard``): the guards of experiments.gate
# ("evidence": all passed; "interval", "segment", "mdape": the one that refused), or a case
# needing no comparison.
GUARDS = (
    "first version",
    "production not finite",
    "challenger not finite",
    "evidence",
    "interval",
    "segment",
    "mdape",
)
WINNING_GUARDS = ("first version", "production not finite", "evidence")


@dataclass(frozen=True)
class Judgement:
    """What a comparison concluded, made while the promotion lock is held."""

    previous_version: int | None  # production when the comparison ran (None: nothing served)
    promoted: bool
    challenger_rmsle: float  # NaN when the challenger's output was not finite
    previous_rmsle: float | None
    summary: str
    guard: str | None = None  # the rule that decided (GUARDS)
    improvement_low: float | None = None  # the bootstrap interval of the RMSLE improvement
    improvement_high: float | None = None
    segment: str | None = None  # the state or kind that refused the challenger


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
    # The evidence (CLEAN 0005; None on verdicts given before it was stored): see Judgement.
    guard: str | None = None
    improvement_low: float | None = None
    improvement_high: float | None = None
    segment: str | None = None

    @property
    def won_on_holdout(self) -> bool:
        """The holdout rule let it replace ``previous_version`` (it may still wait for shadow
        rows). A verdict given before the evidence was stored is judged by its RMSLEs."""
        if self.guard is None:
            return wins(self.challenger_rmsle, self.previous_rmsle, self.margin)
        return self.guard in WINNING_GUARDS


@dataclass(frozen=True)
class AliasMove:
    """One move of the alias: a promotion or a rollback, with its reason."""

    id: int
    moved_at: datetime
    model_name: str
    alias: str
    version: int
    previous_version: int | None
    cause: Literal["promotion", "rollback"]
    reason: str
    promotion_id: int | None


def wins(challenger: float, production: float | None, margin: float) -> bool:
    """The holdout rule: promote when nothing serves yet, or the challenger's RMSLE is better by
    ``margin`` (relative).

    A challenger without a finite RMSLE never wins; a production model without one loses to
    any finite challenger (NaN compares false with everything, so it would never be beaten)."""
    if not math.isfinite(challenger):
        return False
    if production is None or not math.isfinite(production):
        return True
    return challenger <= production * (1.0 - margin)


def _promotion(row: sa.Row[Any]) -> Promotion:
    return Promotion(**row._mapping)


def get(engine: sa.Engine, model_name: str, challenger_version: int) -> Promotion | None:
    """The promotion decision of a model version, or None when there is none."""
    with engine.connect() as conn:
        row = _stored(conn, model_name, challenger_version)
    return _promotion(row) if row else None


def _stored(conn: sa.Connection, model_name: str, challenger_version: int) -> sa.Row[Any] | None:
    """The stored verdict row of a model version (None: not decided yet)."""
    return conn.execute(
        sa.select(model_promotions).where(
            model_promotions.c.model_name == model_name,
            model_promotions.c.challenger_version == challenger_version,
        )
    ).one_or_none()


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
    alias: str = "production",
) -> Promotion:
    """Compare and set, serialized per model: the stored decision of this version, or a new one.

    Under ``pg_advisory_xact_lock`` on the model name: if this version has a decision, it is
    returned and nothing moves; otherwise ``judge`` reads the production version and compares
    (so it sees every earlier decision's alias move), the row is written and, when promoted,
    ``move_alias`` runs, all before the commit releases the lock. A failure rolls the row back.
    """
    with engine.begin() as conn:
        _lock(conn, model_name)
        stored = _stored(conn, model_name, challenger_version)
        if stored is not None:  # decided by an earlier (or a concurrent) run of this study
            return _promotion(stored)
        verdict = judge()
        inserted = conn.execute(
            sa.insert(model_promotions)
            .values(
                model_name=model_name,
                challenger_version=challenger_version,
                **asdict(verdict),  # previous version, promoted, both RMSLEs, summary
                margin=margin,
                holdout_rows=holdout_rows,
                study_name=study_name,
                retrain_decision_id=retrain_decision_id,
            )
            .returning(*model_promotions.c)
        ).one()
        if verdict.promoted:
            _promote(conn, inserted, alias, move_alias)
    return _promotion(inserted)


def confirm(
    engine: sa.Engine,
    *,
    model_name: str,
    challenger_version: int,
    current: Callable[[], int | None],
    check: Callable[[Promotion, int | None], str],
    move_alias: Callable[[], None],
    alias: str = "production",
) -> Promotion:
    """Promote a version whose stored verdict held it back (the shadow gate), under the lock.

    ``check`` gets the stored verdict and the version serving now, and returns the new verdict
    or raises (nothing changes). Then the row becomes a promotion (new summary, decided now),
    the move is recorded and the alias moved, all in one transaction like :func:`decide`.
    A version already promoted is returned as it is.
    """
    with engine.begin() as conn:
        _lock(conn, model_name)
        row = _stored(conn, model_name, challenger_version)
        if row is None:
            raise NotFound(
                f"{model_name} version {challenger_version} has no champion/challenger verdict"
            )
        stored = _promotion(row)
        if stored.promoted:
            return stored
        summary = check(stored, current())
        updated = conn.execute(
            sa.update(model_promotions)
            .where(model_promotions.c.id == stored.id)
            .values(promoted=True, summary=summary, decided_at=sa.func.now())
            .returning(*model_promotions.c)
        ).one()
        _promote(conn, updated, alias, move_alias)
    return _promotion(updated)


def _lock(conn: sa.Connection, model_name: str) -> None:
    """Serialize every alias decision of ``model_name`` until the transaction ends."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_CLASS, sa.func.hashtext(model_name))))


def _promote(
    conn: sa.Connection, promotion: sa.Row[Any], alias: str, move_alias: Callable[[], None]
) -> None:
    """Record the alias move a promoting verdict (a ``model_promotions`` row) makes, then move
    the alias: both inside the caller's transaction, so a failed move rolls the row back."""
    _record_move(
        conn,
        model_name=promotion.model_name,
        alias=alias,
        version=promotion.challenger_version,
        previous_version=promotion.previous_version,
        cause="promotion",
        reason=promotion.summary,
        promotion_id=promotion.id,
    )
    move_alias()


def _record_move(conn: sa.Connection, **values: Any) -> AliasMove:
    row = conn.execute(sa.insert(alias_moves).values(**values).returning(*alias_moves.c)).one()
    return AliasMove(**row._mapping)


def previous_production(engine: sa.Engine, model_name: str, alias: str, serving: int) -> int | None:
    """The version ``alias`` pointed at before it moved to ``serving`` (None: none on record)."""
    with engine.connect() as conn:
        return _previous(conn, model_name, alias, serving)


def _previous(conn: sa.Connection, model_name: str, alias: str, serving: int) -> int | None:
    return conn.execute(
        sa.select(alias_moves.c.previous_version)
        .where(
            alias_moves.c.model_name == model_name,
            alias_moves.c.alias == alias,
            alias_moves.c.version == serving,
        )
        .order_by(alias_moves.c.moved_at.desc(), alias_moves.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def roll_back(
    engine: sa.Engine,
    *,
    model_name: str,
    alias: str,
    to_version: int | None,
    reason: str,
    current: Callable[[], int | None],
    exists: Callable[[int], bool],
    move_alias: Callable[[int], None],
    repeat_ok: bool = False,
) -> AliasMove:
    """Move ``alias`` back to ``to_version`` (default: the version it pointed at before the
    current one) under the promotion lock, recording the move and its reason.

    Like :func:`decide`, the row and the alias move commit together; a promotion deciding at
    the same moment waits for the lock and then compares with the restored version. With
    ``repeat_ok``, finding ``to_version`` already in place returns the move that put it there
    (a retried task must not fail, nor move anything twice).
    """
    if not reason.strip():
        raise BadInput("a rollback needs a reason (it is the audit record)")
    with engine.begin() as conn:
        _lock(conn, model_name)
        serving = current()
        if serving is None:
            raise Conflict(f"{model_name}@{alias} points at no version: nothing to roll back")
        target = (
            to_version if to_version is not None else _previous(conn, model_name, alias, serving)
        )
        if target is None:
            raise Conflict(
                f"version {serving} is the first {alias} version of {model_name} on record: "
                "nothing to go back to (name one with --to)"
            )
        if target == serving:
            done = conn.execute(
                sa.select(alias_moves)
                .where(alias_moves.c.model_name == model_name, alias_moves.c.alias == alias)
                .order_by(alias_moves.c.moved_at.desc(), alias_moves.c.id.desc())
                .limit(1)
            ).one_or_none()
            if repeat_ok and done is not None and done.version == target:
                return AliasMove(**done._mapping)
            raise Conflict(f"version {serving} is already {model_name}@{alias}")
        if not exists(target):
            raise NotFound(f"model {model_name} has no version {target}")
        move = _record_move(
            conn,
            model_name=model_name,
            alias=alias,
            version=target,
            previous_version=serving,
            cause="rollback",
            reason=reason,
            promotion_id=None,
        )
        move_alias(target)
    return move


def _of_model(engine: sa.Engine, table: sa.Table, model_name: str) -> list[sa.Row[Any]]:
    """The rows of ``table`` about ``model_name``, oldest first (ties by id)."""
    when = table.c.moved_at if table is alias_moves else table.c.decided_at
    with engine.connect() as conn:
        query = sa.select(table).where(table.c.model_name == model_name)
        return list(conn.execute(query.order_by(when, table.c.id)))


def alias_history(engine: sa.Engine, model_name: str) -> list[AliasMove]:
    """Every move of the model's aliases, oldest first."""
    return [AliasMove(**r._mapping) for r in _of_model(engine, alias_moves, model_name)]


def history(engine: sa.Engine, model_name: str) -> list[Promotion]:
    """Every decision for ``model_name``, oldest first."""
    return [_promotion(r) for r in _of_model(engine, model_promotions, model_name)]


def production_at(
    engine: sa.Engine, model_name: str, when: datetime, alias: str = "production"
) -> int | None:
    """The version the alias pointed at ``when`` (None before the first promotion): the last
    move at or before it, promotion or rollback."""
    moves = [
        m for m in alias_history(engine, model_name) if m.alias == alias and m.moved_at <= when
    ]
    return moves[-1].version if moves else None
