"""Every request to the RAW database's ``inference_requests``, written off the request path.

A request only appends an :class:`Entry` to an in-memory buffer. A writer thread writes
the entries' rows (one per listing: its inputs, its price, the model version, the request's
latency and time) every ``serving_log_flush_s`` in one transaction (COPY into a temporary
table, then ``INSERT ... ON CONFLICT DO NOTHING`` on ``(request_id, row_index)``, so writing
the same rows twice, e.g. after a lost commit acknowledgement, adds nothing). The COPY payload
is built column by column as COPY text, in a few native calls per column rather than some per
value; an entry becomes row dicts (:data:`Row`) only when its rows cannot be written at once:
they must wait, be spooled, or be halved to find a row the database refuses.

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
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from serving.batch import listings_json
from serving.schema import Listing
from tasador.core import db

logger = logging.getLogger(__name__)

# The columns in COPY order: first the values all rows of a request share (made COPY text once
# per request, see _entry_text), then those of each row.
SHARED = (
    "request_id",
    "requested_at",
    "endpoint",
    "model_name",
    "model_version",
    "latency_ms",
    "status_code",
)
COLUMNS = (*SHARED, "row_index", "inputs", "prediction")
# One inference_requests row, JSON-ready (what spool files hold). Its "inputs" is JSON text
# (a listing, serialized by pydantic in one native call) or a JSON-ready dict (a refused body).
Row = dict[str, Any]
MAX_ERROR_BODY = 2_000  # characters of a refused body kept in the log
SPOOL_LOCK_WAIT_S = 5.0  # making room in the spool waits this long for another worker's pass


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

    def _common(self) -> dict[str, Any]:
        """The values every row of this request shares (``SHARED``, in that order)."""
        return {
            "request_id": str(self.request_id),
            "requested_at": self.requested_at.isoformat(),
            "endpoint": self.endpoint,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "latency_ms": self.latency_ms,
            "status_code": self.status_code,
        }

    def _body(self) -> dict[str, str]:
        # NUL is the one character PostgreSQL's jsonb refuses: one such body must not make its
        # whole batch unwritable.
        return {"body": (self.body or "")[:MAX_ERROR_BODY].replace("\x00", "\ufffd")}

    def _predictions(self) -> Sequence[float | None]:
        return self.predictions or [None] * len(self.listings)

    @property
    def prices_match(self) -> bool:
        """One price per listing, or none at all (a refused request's predictions are unused)."""
        return (
            not self.listings or not self.predictions or len(self.predictions) == len(self.listings)
        )

    def to_rows(self) -> list[Row]:
        common = self._common()
        if not self.listings:
            return [{**common, "row_index": 0, "inputs": self._body(), "prediction": None}]
        return [
            {**common, "row_index": i, "inputs": inputs, "prediction": price}
            for i, (inputs, price) in enumerate(
                zip(listings_json(self.listings), self._predictions(), strict=True)
            )
        ]


# --- COPY text format: one line per row, values tab-separated, NULL as \N ---------------------

NULL = "\\N"
SMALL = 8  # a column of at most this many values is made text value by value (no type check)


def _escape(text: str) -> str:
    """Text as a COPY value: backslash, tab, newline and carriage return are COPY's syntax."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _value(value: Any) -> str:
    """One value of any JSON-ready type as COPY text (a request's shared values, a column's odd
    values). Floats as ``repr`` writes them: the shortest text that reads back as the same
    float."""
    kind = type(value)  # the usual types first, by identity: this runs per request
    if kind is str:
        return _escape(value)
    if kind is float:
        return float.__repr__(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return NULL
    if isinstance(value, float):  # numpy's float64, say
        return float.__repr__(value)
    if isinstance(value, dict | list):
        return _escape(json.dumps(value))  # a refused body's inputs
    return _escape(str(value))


def _texts(values: Sequence[str]) -> Sequence[str]:
    """Escaped text values; one scan of the joined column finds the usual case, nothing to
    escape (a listing's JSON has no raw control character, and rarely a backslash)."""
    joined = "\n".join(values)
    if "\t" in joined or "\r" in joined or joined.count("\n") != len(values) - 1:
        return list(map(_escape, values))
    if "\\" in joined:
        return joined.replace("\\", "\\\\").split("\n")
    return values


def _column(values: Sequence[Any]) -> Sequence[str]:
    """A column as COPY text: in native calls when its values are all of one plain type."""
    if len(values) <= SMALL:
        return list(map(_value, values))
    kinds = set(map(type, values))
    if kinds == {type(None)}:
        return [NULL] * len(values)
    if kinds == {str}:
        return _texts(values)
    if kinds == {float}:
        return list(map(float.__repr__, values))
    if kinds == {int}:
        return list(map(int.__repr__, values))
    return list(map(_value, values))


def _lines(columns: Sequence[Sequence[str]]) -> str:
    """COPY text columns (of one length) as COPY lines."""
    if not columns or not columns[0]:
        return ""
    return "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"


def _rows_text(rows: Sequence[Row]) -> str:
    """Row dicts (a spool file's, or rows the writer keeps in memory) as COPY text of
    ``COLUMNS``."""
    columns = zip(*map(itemgetter(*COLUMNS), rows), strict=True)  # one tuple per column
    return _lines([_column(values) for values in columns])


def _entry_text(entry: Entry) -> str:
    """An entry's rows as COPY text of ``COLUMNS``, without a dict per row: the shared values
    are made text once, the other columns each in a few native calls."""
    n = entry.rows
    shared = "\t".join(map(_value, entry._common().values()))
    if entry.listings:
        if not entry.prices_match:
            raise ValueError(f"{len(entry._predictions())} prices for {n} listings")
        inputs = _column(listings_json(entry.listings))
        prices = _column(entry._predictions())
    else:
        inputs, prices = [_escape(json.dumps(entry._body()))], [NULL]
    if n == 1:  # most requests price one listing: its line is cheaper made directly
        return f"{shared}\t0\t{inputs[0]}\t{prices[0]}\n"
    return _lines([[shared] * n, list(map(int.__repr__, range(n))), inputs, prices])


def _write_text(engine: sa.Engine, payload: str) -> None:
    """Insert rows given as COPY text of ``COLUMNS`` in one transaction (already stored ones are
    skipped)."""
    with engine.begin() as conn:
        db.copy_new_rows(
            conn, "inference_requests", COLUMNS, "request_id, row_index", lambda c: c.write(payload)
        )


def write_rows(engine: sa.Engine, rows: Sequence[Row]) -> None:
    """Insert ``rows`` in one transaction; rows already stored are skipped."""
    _write_text(engine, _rows_text(rows))


def write_entries(engine: sa.Engine, entries: Sequence[Entry]) -> None:
    """Insert the rows of ``entries`` in one transaction, as ``write_rows`` would their
    ``to_rows()``, without a dict per row."""
    _write_text(engine, "".join(map(_entry_text, entries)))


@dataclass
class LogStats:
    """Counters of the inference log: rows buffered, spooled and written, and database health."""

    buffered_rows: int = 0  # handed over by requests, not yet written (memory)
    spooled_rows: int = 0  # in spool files
    written_rows: int = 0  # since start
    dropped_rows: int = 0  # since start: over the memory or spool cap (lost, but counted)
    quarantined_rows: int = 0  # since start: in spool files moved aside as *.corrupt
    database_ok: bool | None = None  # None: nothing attempted yet
    last_error: str | None = None


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _refused_for_content(exc: BaseException) -> bool:
    """The database refused the rows themselves (retrying cannot help), not its availability."""
    error = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    return isinstance(error, psycopg.errors.DataError | psycopg.errors.IntegrityError)


class CorruptSpool(Exception):
    """A spool file that cannot be parsed as inference_requests rows."""


def _parse_spool(text: str) -> list[Row]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise CorruptSpool(f"line {number}: {exc}") from None
        if not isinstance(row, dict) or not set(COLUMNS) <= set(row):
            raise CorruptSpool(f"line {number}: not an inference_requests row")
        rows.append(row)
    return rows


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
        self.max_spool_bytes = max_spool_bytes
        self.shutdown_s = shutdown_s
        self._lock = threading.Lock()  # guards _entries and stats
        self._flushing = threading.Lock()  # one pass at a time (writer thread, stop, tests)
        self._entries: list[Entry] = []
        # Taken by the writer, not written yet: entries while they may still be written as they
        # are (column-wise), rows once they had to be spooled or halved.
        self._held: list[Entry] = []
        self._pending: list[Row] = []
        self._stop = threading.Event()
        self._wake = threading.Event()  # the buffer is full: spool or write now
        self._thread: threading.Thread | None = None
        self.stats = LogStats()
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.stats.spooled_rows = sum(self._count_lines(p) for p in self._spool_files())

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
        self._wake.set()

    # --- writer ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    @property
    def writer_alive(self) -> bool:
        """The writer thread runs (it survives every error of a pass; see the module doc)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float | None = None) -> None:
        """Write what can be written within ``timeout_s`` (default ``shutdown_s``); spool the
        rest."""
        deadline = time.monotonic() + (self.shutdown_s if timeout_s is None else timeout_s)
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))  # it flushes once more, then ends
        if thread is not None and thread.is_alive():
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
            if (thread is None or self._entries) and self._flush_locked():
                return
            if self._pending or self._held or self._entries:
                self._spool_pending(final=True)
        finally:
            self._flushing.release()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception:  # a bug must not end logging for good: log it, retry next pass
                logger.exception("inference log pass failed")
        try:
            self.flush()  # the last pass of a shutdown (stop() spools what it leaves)
        except Exception:
            logger.exception("inference log: last pass failed")

    def flush(self) -> bool:
        """One pass: spool files first (oldest first), then the buffer. True if all written."""
        with self._flushing:
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        try:
            return self._pass()
        finally:
            self._recount_spool()

    def _pass(self) -> bool:
        with self._lock:
            entries, self._entries = self._entries, []
            self.stats.buffered_rows -= sum(e.rows for e in entries)
        self._held += self._intact(entries)
        try:
            engine = self._engine()
            with self._spool_lock(wait_s=0.0) as draining:
                for path in self._spool_files() if draining else []:
                    self._write_spool_file(engine, path)
            if self._held:
                self._write_held(engine)
            if self._pending:
                refused = self._write_isolating(engine, self._pending)
                if refused:
                    self._quarantine(refused)
                self._counted_written(len(self._pending) - len(refused))
                self._pending = []
        except Exception as exc:  # database or disk: keep the rows, try again later
            if self.stats.database_ok is not False:  # say it once per outage, not per attempt
                logger.warning("inference log not written, will retry: %s", exc)
            self.stats.database_ok = False
            self.stats.last_error = _short(exc)
            if self._memory_rows() >= self.max_buffered_rows:
                self._spool_pending()
            return False
        if self.stats.database_ok is False:
            logger.info("inference log written again")
        self.stats.database_ok = True
        self.stats.last_error = None
        return True

    @contextlib.contextmanager
    def _spool_lock(self, wait_s: float) -> Iterator[bool]:
        """The spool folder's lock across worker processes; yields whether it was taken."""
        with self.spool_dir.with_name(f"{self.spool_dir.name}.lock").open("ab") as handle:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _recount_spool(self) -> None:
        """``spooled_rows`` from the folder (other workers spool and drain it too)."""
        with contextlib.suppress(OSError):
            rows = sum(self._count_lines(p) for p in self._spool_files())
            with self._lock:
                self.stats.spooled_rows = rows

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
                logger.error("inference log: a row refused by the database: %s", _short(exc))
                return rows
        middle = len(rows) // 2
        return self._write_isolating(engine, rows[:middle]) + self._write_isolating(
            engine, rows[middle:]
        )

    def _quarantine(self, rows: list[Row]) -> None:
        """Keep rows the database refuses in a ``*.corrupt`` file, for a person to look at."""
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        temporary = self.spool_dir / f".{name}.tmp"
        with temporary.open("w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
        temporary.rename(self.spool_dir / f"{name}.corrupt")
        with self._lock:
            self.stats.quarantined_rows += len(rows)

    def _write_spool_file(self, engine: sa.Engine, path: Path) -> None:
        try:
            rows = _parse_spool(path.read_text(errors="replace"))
        except CorruptSpool as exc:
            lines = self._count_lines(path)
            aside = path.with_suffix(".corrupt")
            path.rename(aside)
            logger.error("inference log: spool file moved aside as %s: %s", aside.name, exc)
            with self._lock:
                self.stats.spooled_rows -= lines
                self.stats.quarantined_rows += lines
            return
        refused = self._write_isolating(engine, rows)
        if refused:
            self._quarantine(refused)
        path.unlink()
        self._counted_written(len(rows) - len(refused))
        with self._lock:
            self.stats.spooled_rows -= len(rows)

    def _counted_written(self, n: int, spooled: bool = False) -> None:
        with self._lock:
            self.stats.written_rows += n
            if spooled:
                self.stats.spooled_rows -= n

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
            self._spool(rows)
        except OSError as exc:
            logger.warning("inference log: spooling failed, rows kept in memory: %s", exc)
            self.stats.last_error = _short(exc)
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
            self._spool(rows)
        except OSError as exc:
            logger.error("inference log: %d rows lost at shutdown: %s", len(rows), exc)

    def _spool(self, rows: list[Row]) -> None:
        """Write ``rows`` as one spool file, first dropping the oldest rows (older files first,
        then the head of ``rows``) so the spool stays within ``max_spool_bytes``."""
        if not rows:
            return
        lines = [json.dumps(row) + "\n" for row in rows]
        sizes = [len(line.encode()) for line in lines]
        total = sum(sizes)
        skip = 0
        while total > self.max_spool_bytes and skip < len(lines):  # larger than the cap alone
            total -= sizes[skip]
            skip += 1
        if skip:
            logger.warning("inference log: spool cap reached, %d newest-batch rows dropped", skip)
            with self._lock:
                self.stats.dropped_rows += skip
        lines = lines[skip:]
        if not lines:
            return
        with self._spool_lock(wait_s=SPOOL_LOCK_WAIT_S):  # not taken: over the cap for a pass
            self._make_room(total)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}-{len(lines)}rows"
        temporary = self.spool_dir / f".{name}.tmp"
        try:
            with temporary.open("w") as handle:
                handle.writelines(lines)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.rename(self.spool_dir / f"{name}.jsonl")
        except OSError:
            temporary.unlink(missing_ok=True)  # a partial file would only take space
            raise
        with self._lock:
            self.stats.spooled_rows += len(lines)

    def _make_room(self, needed: int) -> None:
        """Delete the oldest spool files until ``needed`` more bytes fit under the cap."""
        files = self._spool_files()
        used = sum(p.stat().st_size for p in files)
        for path in files:
            if used + needed <= self.max_spool_bytes:
                return
            try:
                size, lines = path.stat().st_size, self._count_lines(path)
                path.unlink()
            except FileNotFoundError:  # drained by another worker meanwhile
                continue
            used -= size
            logger.warning("inference log: spool cap reached, %d oldest rows dropped", lines)
            with self._lock:
                self.stats.spooled_rows -= lines
                self.stats.dropped_rows += lines

    def _spool_files(self) -> list[Path]:
        return sorted(self.spool_dir.glob("*.jsonl"))

    @staticmethod
    def _count_lines(path: Path) -> int:
        """Rows of a spool file: from its name (``...-<n>rows.jsonl``), else by reading it."""
        counted = path.stem.rsplit("-", 1)[-1]
        if counted.endswith("rows") and counted[:-4].isdigit():
            return int(counted[:-4])
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
