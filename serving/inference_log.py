"""Every request to the RAW database's ``inference_requests``, written off the request path.

A request only appends an :class:`Entry` to an in-memory buffer. A writer thread turns
entries into rows (one per listing: its inputs, its price, the model version, the request's
latency and time) and writes them every ``serving_log_flush_s`` in one transaction (COPY into
a temporary table, then ``INSERT ... ON CONFLICT DO NOTHING`` on ``(request_id, row_index)``,
so writing the same rows twice, e.g. after a lost commit acknowledgement, adds nothing).

When the database is down, rows wait: in memory up to ``serving_log_buffer_rows``, beyond that
in spool files (JSON lines) under ``<state_dir>/serving/spool``, and at shutdown whatever is
still unwritten is spooled too. Spool files are written to a temporary name and renamed, so
the writer only ever sees complete files; it writes them, oldest first, once the database
answers again (also after a restart of the service), and deletes each only after its commit.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from serving.schema import Listing

logger = logging.getLogger(__name__)

COLUMNS = (
    "request_id",
    "row_index",
    "requested_at",
    "endpoint",
    "model_name",
    "model_version",
    "inputs",
    "prediction",
    "latency_ms",
    "status_code",
)
Row = dict[str, Any]  # one inference_requests row, JSON-ready (what spool files hold)
MAX_ERROR_BODY = 2_000  # characters of a refused body kept in the log


@dataclass(frozen=True)
class Entry:
    """One request, as the request path hands it over (no serialization done yet)."""

    endpoint: str
    status_code: int
    requested_at: datetime
    latency_ms: float
    listings: Sequence[Listing] = ()
    predictions: Sequence[float] | None = None
    model_name: str | None = None
    model_version: str | None = None
    body: str | None = None  # a refused request's body (truncated)
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def rows(self) -> int:
        return max(1, len(self.listings))

    def to_rows(self) -> list[Row]:
        common = {
            "request_id": str(self.request_id),
            "requested_at": self.requested_at.isoformat(),
            "endpoint": self.endpoint,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "latency_ms": self.latency_ms,
            "status_code": self.status_code,
        }
        if not self.listings:
            body = (self.body or "")[:MAX_ERROR_BODY]
            return [{**common, "row_index": 0, "inputs": {"body": body}, "prediction": None}]
        predictions: Sequence[float | None] = self.predictions or [None] * len(self.listings)
        return [
            {
                **common,
                "row_index": i,
                "inputs": listing.model_dump(mode="json", exclude_none=True),
                "prediction": price,
            }
            for i, (listing, price) in enumerate(zip(self.listings, predictions, strict=True))
        ]


def write_rows(engine: sa.Engine, rows: Sequence[Row]) -> None:
    """Insert ``rows`` in one transaction; rows already stored are skipped."""
    columns = ", ".join(COLUMNS)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE incoming ON COMMIT DROP AS "
            f"SELECT {columns} FROM inference_requests WITH NO DATA"
        )
        driver = conn.connection.driver_connection
        assert driver is not None  # an open connection always has its psycopg connection
        cursor = driver.cursor()
        with cursor.copy(f"COPY incoming ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([json.dumps(row[c]) if c == "inputs" else row[c] for c in COLUMNS])
        conn.exec_driver_sql(
            f"INSERT INTO inference_requests ({columns}) SELECT {columns} FROM incoming "
            "ON CONFLICT (request_id, row_index) DO NOTHING"
        )


@dataclass
class LogStats:
    """Counters of the inference log: rows buffered, spooled and written, and database health."""

    buffered_rows: int = 0  # handed over by requests, not yet written
    spooled_rows: int = 0  # in spool files
    written_rows: int = 0  # since start
    database_ok: bool | None = None  # None: nothing attempted yet
    last_error: str | None = None


class InferenceLog:
    """The buffer, the spool and the writer thread (see the module doc)."""

    def __init__(
        self,
        engine: Callable[[], sa.Engine],
        spool_dir: Path,
        max_buffered_rows: int,
        flush_s: float,
    ) -> None:
        self._engine = engine
        self.spool_dir = spool_dir
        self.max_buffered_rows = max_buffered_rows
        self.flush_s = flush_s
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._pending: list[Row] = []  # the writer's rows that did not make it yet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = LogStats()
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.stats.spooled_rows = sum(self._count_lines(p) for p in self._spool_files())

    # --- request path -------------------------------------------------------------------------

    def record(self, entry: Entry) -> None:
        """Hand a request over; O(1) unless the buffer is full (then it goes to disk)."""
        with self._lock:
            self._entries.append(entry)
            self.stats.buffered_rows += entry.rows
            if self.stats.buffered_rows < self.max_buffered_rows:
                return
            overflow, self._entries = self._entries, []
            self.stats.buffered_rows = 0
        self._spool([row for e in overflow for row in e.to_rows()])

    # --- writer ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write what can be written; spool the rest."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if not self.flush():
            self._spool_pending()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def flush(self) -> bool:
        """One pass: spool files first (oldest first), then the buffer. True if all written."""
        try:
            engine = self._engine()
            for path in self._spool_files():
                rows = [json.loads(line) for line in path.read_text().splitlines() if line]
                write_rows(engine, rows)
                path.unlink()
                self._counted_written(len(rows), spooled=True)
            with self._lock:
                entries, self._entries = self._entries, []
                self.stats.buffered_rows -= sum(e.rows for e in entries)
            self._pending += [row for e in entries for row in e.to_rows()]
            if self._pending:
                write_rows(engine, self._pending)
                self._counted_written(len(self._pending))
                self._pending = []
        except Exception as exc:  # any failure means: keep the rows, try again later
            if self.stats.database_ok is not False:  # say it once per outage, not per attempt
                logger.warning("inference log not written, will retry: %s", exc)
            self.stats.database_ok = False
            self.stats.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            if len(self._pending) >= self.max_buffered_rows:
                self._spool_pending()
            return False
        if self.stats.database_ok is False:
            logger.info("inference log written again")
        self.stats.database_ok = True
        self.stats.last_error = None
        return True

    def _counted_written(self, n: int, spooled: bool = False) -> None:
        with self._lock:
            self.stats.written_rows += n
            if spooled:
                self.stats.spooled_rows -= n

    # --- spool ----------------------------------------------------------------------------------

    def _spool_pending(self) -> None:
        with self._lock:
            entries, self._entries = self._entries, []
            self.stats.buffered_rows = 0
        rows, self._pending = self._pending + [r for e in entries for r in e.to_rows()], []
        self._spool(rows)

    def _spool(self, rows: list[Row]) -> None:
        if not rows:
            return
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        temporary = self.spool_dir / f".{name}.tmp"
        with temporary.open("w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.rename(self.spool_dir / f"{name}.jsonl")
        with self._lock:
            self.stats.spooled_rows += len(rows)

    def _spool_files(self) -> list[Path]:
        return sorted(self.spool_dir.glob("*.jsonl"))

    @staticmethod
    def _count_lines(path: Path) -> int:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
