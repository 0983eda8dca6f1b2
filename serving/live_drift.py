"""The newest live drift check (RAW ``live_drift_checks``, written by ``tasador monitor`` and
its DAG), read every ``POLL_S`` so ``/metrics`` can publish it for the live drift alert.

Read off the request path by a thread of each worker: a check runs hourly, so a poll every 30
seconds costs one indexed row read and shows a new check well within the alert's window. A
failed read keeps the figures of the last one that worked (RAW down is its own alert).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from serving.background import PeriodicLoop
from tasador.core.tables.raw import live_drift_checks

POLL_S = 30.0
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveFigures:
    """What /metrics says of the newest check."""

    alarm: bool
    share: float  # share of the checks that fired; 0 when too few rows to compare
    rows: int
    checked_at: float  # Unix time


class LiveDriftReader:
    """Keeps the newest stored check's figures (None before any check, or any read)."""

    def __init__(self, engine: Callable[[], sa.Engine]) -> None:
        self._engine = engine
        self.latest: LiveFigures | None = None
        self._loop = PeriodicLoop("live-drift", self.read, POLL_S, tick_first=True)

    def read(self) -> None:
        checks = live_drift_checks
        query = (
            sa.select(checks.c.alarm, checks.c.drift_share, checks.c.rows, checks.c.checked_at)
            .order_by(checks.c.id.desc())
            .limit(1)
        )
        try:
            with self._engine().connect() as conn:
                row = conn.execute(query).one_or_none()
        except sa.exc.SQLAlchemyError as exc:
            logger.warning("cannot read the newest live drift check: %s", exc)
            return
        if row is not None:
            self.latest = LiveFigures(
                alarm=row.alarm,
                share=row.drift_share or 0.0,
                rows=row.rows,
                checked_at=row.checked_at.timestamp(),
            )

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
