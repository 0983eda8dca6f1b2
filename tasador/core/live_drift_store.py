"""Live drift checks in RAW (``live_drift_checks``): the requests a check reads, and its result.

The watermark is the last request id a *compared* check read: a window with too few rows is
stored (it says so) but does not move the watermark, so its requests are read again, with the
next ones, until there are enough. Callers hold :func:`lock` for the whole read-compare-store
so two runs at once take turns: the second finds the watermark moved and nothing new to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from tasador.core.evidence import LiveDrift
from tasador.core.tables.raw import inference_requests, live_drift_checks

# The advisory lock of live drift checks (distinct from the migrations' keys).
LOCK_KEY = 7_305_218_029
PREDICT = "predict"  # how serving logs its /predict endpoint


@dataclass(frozen=True)
class Requests:
    """The listings served in a window ``(after, through]`` (at most the newest ``limit``)."""

    after: int
    through: int
    rows: int  # every served listing in the window, read or not
    inputs: pd.DataFrame  # the newest ones' fields as sent (JSON values, not yet typed)


def lock(conn: sa.Connection) -> None:
    """Hold the live drift lock until ``conn``'s transaction ends."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_KEY)))


def watermark(conn: sa.Connection) -> int:
    """The last request id a compared check read (0: none yet)."""
    found = conn.execute(
        sa.select(sa.func.max(live_drift_checks.c.through_request_id)).where(
            live_drift_checks.c.compared
        )
    ).scalar_one()
    return int(found or 0)


def _served(after: int) -> list[sa.ColumnElement[bool]]:
    log = inference_requests
    # Only listings a model priced: a refused body (422) holds no listing to compare.
    return [log.c.id > after, log.c.endpoint == PREDICT, log.c.status_code == 200]


def new_requests(conn: sa.Connection, after: int, limit: int) -> Requests:
    """The served listings after request id ``after``; the newest ``limit`` of them are read
    (the statistics sample that many anyway, and a week of traffic must not fill memory)."""
    log = inference_requests
    through, rows = conn.execute(
        sa.select(sa.func.max(log.c.id), sa.func.count()).where(*_served(after))
    ).one()
    if not rows:
        return Requests(after=after, through=after, rows=0, inputs=pd.DataFrame())
    newest = conn.execute(
        sa.select(log.c.inputs).where(*_served(after)).order_by(log.c.id.desc()).limit(limit)
    ).scalars()
    return Requests(
        after=after, through=int(through), rows=int(rows), inputs=pd.DataFrame.from_records(newest)
    )


def save(conn: sa.Connection, result: LiveDrift, summary: str) -> LiveDrift | None:
    """Store ``result``; None when its window is stored already (a repeated run)."""
    row = conn.execute(
        insert(live_drift_checks)
        .values(
            after_request_id=result.after_request_id,
            through_request_id=result.through_request_id,
            rows=result.rows,
            compared=result.compared,
            alarm=result.alarm,
            drift_share=result.drift_share,
            model_version=result.model_version,
            summary=summary,
            result=result.model_dump(mode="json", exclude={"check_id", "checked_at"}),
        )
        .on_conflict_do_nothing(constraint="live_drift_window")
        .returning(live_drift_checks.c.id, live_drift_checks.c.checked_at)
    ).one_or_none()
    if row is None:
        return None
    return result.model_copy(update={"check_id": row.id, "checked_at": row.checked_at})


def _result(row: Any) -> LiveDrift:
    return LiveDrift.model_validate(
        {**row.result, "check_id": row.id, "checked_at": row.checked_at}
    )


def latest(
    engine: sa.Engine, after: datetime | None = None, alarm: bool = False
) -> LiveDrift | None:
    """The newest stored check (checked after ``after``, and one that alarmed, when asked)."""
    query = sa.select(live_drift_checks).order_by(live_drift_checks.c.id.desc()).limit(1)
    if after is not None:
        query = query.where(live_drift_checks.c.checked_at > after)
    if alarm:
        query = query.where(live_drift_checks.c.alarm)
    with engine.connect() as conn:
        row = conn.execute(query).one_or_none()
    return None if row is None else _result(row)


def history(engine: sa.Engine, limit: int = 50) -> list[LiveDrift]:
    """The newest ``limit`` checks, newest first."""
    query = sa.select(live_drift_checks).order_by(live_drift_checks.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [_result(row) for row in conn.execute(query)]
