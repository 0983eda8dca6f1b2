"""Every request to the RAW database's ``inference_requests``, written off the request path.

A request only appends an :class:`Entry` to an in-memory buffer. A writer thread writes
the entries' rows (one per listing: its inputs, its price, the model version, the request's
latency and time) every ``serving_log_flush_s`` in one transaction (serving.log_rows: writing the
same rows twice adds nothing).

When the database is down, rows wait: in memory up to ``serving_log_buffer_rows``, beyond that
in spool files (JSON lines) under ``<state_dir>/serving/spool``, and at shutdown whatever is
still unwritten is spooled too. Spool files are written to a temporary name and renamed, so
the writer only ever sees complete files; it writes them, oldest first, once the database
answers again (also after a restart of the service), and deletes each only after its commit.

Faults it survives (docs/reliability.md): any error of one pass (the database, the disk) leaves
the rows where they were and the next pass retries, so the writer thread never dies. A full disk
keeps rows in memory, at most twice ``serving_log_buffer_rows`` (the oldest are dropped beyond).
The spool holds at most ``serving_log_spool_max_bytes``: past it the oldest rows go first. Every
dropped row is counted (``dropped_rows``, in ``/metrics``). A spool file that cannot be parsed is
renamed ``*.corrupt``; rows the database refuses for their content (found by halving the batch,
so the rows around them are still written) go to a ``*.corrupt`` file of their own. Both are kept
for a person to look at, counted in ``quarantined_rows``, and the files after them proceed.
Shutdown takes at most ``serving_shutdown_s``: what is not written by then is spooled.

Several worker processes (``serving_workers``) share one spool folder. Each writes its own
requests (request ids are unique, and a row written twice is stored once), so every request is
stored exactly once whichever worker answered it. Spool files are drained by one worker at a
time, the one holding an exclusive lock on ``<spool>.lock`` beside the folder (the others skip
the spool that pass and write their own buffers), and the spool cap is enforced under the same
lock. Each file names its row count, so ``spooled_rows`` is the folder's, from a listing.

Three modules: the rows and how they are written (serving.log_rows), the spool folder
(serving.log_spool), and here the buffer and the writer thread that moves rows between them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import sqlalchemy as sa

from serving.background import PeriodicLoop
from serving.log_rows import MAX_ERROR_BODY, Entry, Row, write_entries, write_rows
from serving.log_spool import LogStats, Spool
from tasador.core.errors import summary

# What the request path and the tests use, from the module the log is known by.
__all__ = [
    "MAX_ERROR_BODY",
    "Entry",
    "InferenceLog",
    "LogStats",
    "Row",
    "write_entries",
    "write_rows",
]

logger = logging.getLogger(__name__)


def _refused_for_content(exc: BaseException) -> bool:
    """The database refused the rows themselves (retrying cannot help), not its availability."""
    error = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    return isinstance(error, psycopg.errors.DataError | psycopg.errors.IntegrityError)


class InferenceLog:
    """The buffer, the spool and the writer thread (see the module doc)."""

    def __init__(
        self,
        engine: Callable[[], sa.Engine],
        spool_dir: Path,
        max_buffered_rows: int,
        flush_s: float,
        max_spool_bytes: int = 1024**3,
        shutdown_s: float = 20.0,
    ) -> None:
        self._engine = engine
        self.spool_dir = spool_dir
        self.max_buffered_rows = max_buffered_rows
        self.flush_s = flush_s
        self.shutdown_s = shutdown_s
        self._lock = threading.Lock()  # guards _entries and stats
        self._flushing = threading.Lock()  # one pass at a time (writer thread, stop, tests)
        self._entries: list[Entry] = []
        # Taken by the writer, not written yet: entries while they may still be written as they
        # are (column-wise), rows once they had to be spooled or halved.
        self._held: list[Entry] = []
        self._pending: list[Row] = []
        self.stats = LogStats()
        self._spool = Spool(spool_dir, max_spool_bytes, self.stats, self._lock)
        self.stats.spooled_rows = self._spool.rows()
        # Its last pass writes what it can; stop() spools what that leaves (and waits for it at
        # most shutdown_s, see there).
        self._writer = PeriodicLoop(
            "inference-log", self.flush, flush_s, final=self.flush, stop_timeout_s=shutdown_s
        )

    # --- request path -------------------------------------------------------------------------

    def record(self, entry: Entry) -> None:
        """Hand a request over; O(1), never touches the disk or the database."""
        with self._lock:
            self._entries.append(entry)
            self.stats.buffered_rows += entry.rows
            if self.stats.buffered_rows < self.max_buffered_rows:
                return
            # The writer is behind (or stuck on a hung database): bound memory at twice the
            # buffer by dropping the oldest requests, counted.
            while self.stats.buffered_rows > 2 * self.max_buffered_rows and self._entries:
                dropped = self._entries.pop(0)
                self.stats.buffered_rows -= dropped.rows
                self.stats.dropped_rows += dropped.rows
        self._writer.wake()  # the buffer is full: spool or write now

    # --- writer ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        self._writer.start()

    @property
    def writer_alive(self) -> bool:
        """The writer thread runs (it survives every error of a pass; see the module doc)."""
        return self._writer.alive

    def stop(self, timeout_s: float | None = None) -> None:
        """Write what can be written within ``timeout_s`` (default ``shutdown_s``); spool the
        rest."""
        deadline = time.monotonic() + (self.shutdown_s if timeout_s is None else timeout_s)
        was_running = self._writer.started
        # It flushes once more, then ends.
        if not self._writer.stop(max(0.0, deadline - time.monotonic())):
            # Stuck on the database: spool a copy of everything unwritten. Should the writer
            # commit after all, the rows are there twice, and writing them again adds nothing.
            logger.warning("inference log: shutdown flush timed out, spooling what is unwritten")
            self._spool_snapshot()
            return
        if not self._flushing.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self._spool_snapshot()
            return
        try:
            # The writer's last pass wrote what it could; try again only for what came after.
            if (not was_running or self._entries) and self._flush_locked():
                return
            if self._pending or self._held or self._entries:
                self._spool_pending(final=True)
        finally:
            self._flushing.release()

    def flush(self) -> bool:
        """One pass: spool files first (oldest first), then the buffer. True if all written."""
        with self._flushing:
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        try:
            return self._pass()
        finally:
            self._spool.recount()

    def _pass(self) -> bool:
        with self._lock:
            entries, self._entries = self._entries, []
            self.stats.buffered_rows -= sum(e.rows for e in entries)
        self._held += self._intact(entries)
        try:
            engine = self._engine()
            with self._spool.lock(wait_s=0.0) as draining:
                for path in self._spool.files() if draining else []:
                    self._write_spool_file(engine, path)
            if self._held:
                self._write_held(engine)
            if self._pending:
                refused = self._write_isolating(engine, self._pending)
                if refused:
                    self._spool.quarantine(refused)
                self._counted_written(len(self._pending) - len(refused))
                self._pending = []
        except Exception as exc:  # database or disk: keep the rows, try again later
            if self.stats.database_ok is not False:  # say it once per outage, not per attempt
                logger.warning("inference log not written, will retry: %s", exc)
            self.stats.database_ok = False
            self.stats.last_error = summary(exc)
            if self._memory_rows() >= self.max_buffered_rows:
                self._spool_pending()
            return False
        if self.stats.database_ok is False:
            logger.info("inference log written again")
        self.stats.database_ok = True
        self.stats.last_error = None
        return True

    def _intact(self, entries: list[Entry]) -> list[Entry]:
        """Drop (counted) entries whose rows cannot be made: held, one would fail every pass."""
        kept = [e for e in entries if e.prices_match]
        if len(kept) < len(entries):
            lost = sum(e.rows for e in entries) - sum(e.rows for e in kept)
            logger.error("inference log: %d rows whose prices do not match their listings", lost)
            with self._lock:
                self.stats.dropped_rows += lost
        return kept

    def _write_held(self, engine: sa.Engine) -> None:
        """Write the held entries in one go; if the database refuses some row of theirs for its
        content, move them to ``_pending`` as rows, for ``_write_isolating`` to find it."""
        try:
            write_entries(engine, self._held)
        except Exception as exc:
            if not _refused_for_content(exc):
                raise
            self._pending += [row for e in self._held for row in e.to_rows()]
        else:
            self._counted_written(sum(e.rows for e in self._held))
        self._held = []

    def _write_isolating(self, engine: sa.Engine, rows: list[Row]) -> list[Row]:
        """Write ``rows``; return the ones the database refuses for their content.

        One refused row fails its whole transaction, so the batch is halved until each refused
        row stands alone: the others are written (rewriting a written half adds nothing)."""
        try:
            write_rows(engine, rows)
            return []
        except Exception as exc:
            if not _refused_for_content(exc):
                raise
            if len(rows) == 1:
                logger.error("inference log: a row refused by the database: %s", summary(exc))
                return rows
        middle = len(rows) // 2
        return self._write_isolating(engine, rows[:middle]) + self._write_isolating(
            engine, rows[middle:]
        )

    def _write_spool_file(self, engine: sa.Engine, path: Path) -> None:
        rows = self._spool.read(path)
        if rows is None:  # corrupt: moved aside
            return
        refused = self._write_isolating(engine, rows)
        if refused:
            self._spool.quarantine(refused)
        self._spool.remove(path, len(rows))
        self._counted_written(len(rows) - len(refused))

    def _counted_written(self, n: int) -> None:
        with self._lock:
            self.stats.written_rows += n

    def _memory_rows(self) -> int:
        return len(self._pending) + sum(e.rows for e in self._held) + self.stats.buffered_rows

    # --- spool ----------------------------------------------------------------------------------

    def _spool_pending(self, final: bool = False) -> None:
        """Move every unwritten row to the spool; on a disk error keep them in memory, at most
        twice ``max_buffered_rows`` (the oldest are dropped first), or, at shutdown, count them
        lost."""
        with self._lock:
            entries, self._entries = self._entries, []
            self.stats.buffered_rows = 0
        entries, self._held = self._held + entries, []
        rows = self._pending + [r for e in entries for r in e.to_rows()]
        try:
            self._spool.write(rows)
        except OSError as exc:
            logger.warning("inference log: spooling failed, rows kept in memory: %s", exc)
            self.stats.last_error = summary(exc)
            # Memory holds twice the buffer, like record() allows: past it, the oldest go.
            excess = 0 if final else max(0, len(rows) - 2 * self.max_buffered_rows)
            self._pending = rows[excess:]
            with self._lock:
                self.stats.dropped_rows += excess
            if final:
                logger.error("inference log: %d rows could not be spooled at shutdown", len(rows))
                with self._lock:
                    self.stats.dropped_rows += len(rows)
            return
        self._pending = []

    def _spool_snapshot(self) -> None:
        """Spool a copy of every unwritten row without taking them from the writer."""
        with self._lock:
            entries = self._held + self._entries  # the writer may be stuck writing _held
            rows = list(self._pending) + [r for e in entries for r in e.to_rows()]
        try:
            self._spool.write(rows)
        except OSError as exc:
            logger.error("inference log: %d rows lost at shutdown: %s", len(rows), exc)
