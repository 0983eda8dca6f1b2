"""Each group's position in its sequence of batches, kept in SQLite so it survives restarts.

A cursor is keyed by (source key, group, day): serving another scenario, scale, seed or file
starts every group from batch 0 without forgetting where the old one was. Serving a batch holds
an in-process lock per (group, day) while the batch is built, then moves the cursor with a
compare-and-set, so concurrent requests never skip or repeat a batch, even from several
processes sharing the file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (
    source_key TEXT NOT NULL,
    group_number INTEGER NOT NULL,
    day TEXT NOT NULL,          -- '' when the request named no day
    next_batch INTEGER NOT NULL,
    PRIMARY KEY (source_key, group_number, day)
)
"""


class Exhausted(Exception):
    """The group has had every batch."""


class CursorStore:
    """The next batch number of each group and day, in SQLite, per source key."""

    def __init__(self, path: Path, source_key: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.source_key = source_key
        self._locks: defaultdict[tuple[int, str], threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        with self._connect() as conn:
            conn.execute(SCHEMA)

    def _connect(self) -> closing[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        return closing(conn)

    def _lock(self, group: int, day: str | None) -> threading.Lock:
        with self._locks_guard:
            return self._locks[(group, day or "")]

    def position(self, group: int, day: str | None) -> int:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT next_batch FROM cursors WHERE source_key=? AND group_number=? AND day=?",
                (self.source_key, group, day or ""),
            ).fetchone()
        return row[0] if row else 0

    def _advance(self, group: int, day: str | None, expected: int) -> bool:
        """Move the cursor from ``expected`` to the next batch; False if it had moved."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                current = conn.execute(
                    "SELECT next_batch FROM cursors "
                    "WHERE source_key=? AND group_number=? AND day=?",
                    (self.source_key, group, day or ""),
                ).fetchone()
                if (current[0] if current else 0) != expected:
                    conn.execute("ROLLBACK")
                    return False
                conn.execute(
                    "INSERT INTO cursors (source_key, group_number, day, next_batch) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (source_key, group_number, day) "
                    "DO UPDATE SET next_batch = excluded.next_batch",
                    (self.source_key, group, day or "", expected + 1),
                )
                conn.execute("COMMIT")
                return True
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def serve_next(
        self, group: int, day: str | None, n_batches: int, build: Callable[[int], T]
    ) -> tuple[int, T]:
        """Build the group's next batch and move its cursor past it; raise Exhausted at the end.

        If building fails, the cursor stays where it was and the same batch is served next time.
        """
        with self._lock(group, day):
            while True:
                number = self.position(group, day)
                if number >= n_batches:
                    raise Exhausted
                result = build(number)
                if self._advance(group, day, number):
                    return number, result

    def restart(self, group: int, day: str | None) -> None:
        with self._lock(group, day), self._connect() as conn:
            conn.execute(
                "DELETE FROM cursors WHERE source_key=? AND group_number=? AND day=?",
                (self.source_key, group, day or ""),
            )
