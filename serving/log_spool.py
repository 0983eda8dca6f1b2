"""The inference log's spool: rows waiting on disk for the database, shared by the workers.

Files of JSON lines (one :data:`serving.log_rows.Row` a line) under ``<state_dir>/serving/spool``,
named ``<time>-<random>-<n>rows.jsonl`` so their order is their age and ``spooled_rows`` comes
from a listing. A file is written to a temporary name, synced and renamed, so a reader only ever
sees complete files. The folder holds at most ``max_bytes``: past it the oldest rows go first,
counted in ``dropped_rows``. A file that cannot be parsed, and rows the database refuses for their
content, are kept as ``*.corrupt`` for a person to look at, counted in ``quarantined_rows``.

The worker processes of one `tasador serve` share the folder; whoever drains it or makes room in
it holds an exclusive lock on ``<spool>.lock`` beside it (:meth:`Spool.lock`).
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from serving.log_rows import COLUMNS, Row

logger = logging.getLogger(__name__)

SPOOL_LOCK_WAIT_S = 5.0  # making room in the spool waits this long for another worker's pass


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


class CorruptSpool(Exception):
    """A spool file that cannot be parsed as inference_requests rows."""


def parse_spool(text: str) -> list[Row]:
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


class Spool:
    """The spool folder of one inference log; counts what it spools, drops and sets aside in
    the log's ``stats`` (under the log's ``lock``, which also guards its buffer)."""

    def __init__(self, folder: Path, max_bytes: int, stats: LogStats, lock: threading.Lock) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._stats = stats
        self._lock = lock
        folder.mkdir(parents=True, exist_ok=True)

    def files(self) -> list[Path]:
        """The complete spool files, oldest first."""
        return sorted(self.folder.glob("*.jsonl"))

    def rows(self) -> int:
        """Rows in the folder's spool files (every worker's)."""
        return sum(self.count_lines(p) for p in self.files())

    def recount(self) -> None:
        """``spooled_rows`` from the folder (other workers spool and drain it too)."""
        with contextlib.suppress(OSError):
            rows = self.rows()
            with self._lock:
                self._stats.spooled_rows = rows

    @contextlib.contextmanager
    def lock(self, wait_s: float) -> Iterator[bool]:
        """The spool folder's lock across worker processes; yields whether it was taken."""
        with self.folder.with_name(f"{self.folder.name}.lock").open("ab") as handle:
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

    def read(self, path: Path) -> list[Row] | None:
        """The rows of a spool file; None when it cannot be parsed (it is then moved aside as
        ``*.corrupt`` and its rows counted as quarantined)."""
        try:
            return parse_spool(path.read_text(errors="replace"))
        except CorruptSpool as exc:
            lines = self.count_lines(path)
            aside = path.with_suffix(".corrupt")
            path.rename(aside)
            logger.error("inference log: spool file moved aside as %s: %s", aside.name, exc)
            with self._lock:
                self._stats.spooled_rows -= lines
                self._stats.quarantined_rows += lines
            return None

    def remove(self, path: Path, rows: int) -> None:
        """Delete a spool file whose ``rows`` are written (or quarantined)."""
        path.unlink()
        with self._lock:
            self._stats.spooled_rows -= rows

    def quarantine(self, rows: list[Row]) -> None:
        """Keep rows the database refuses in a ``*.corrupt`` file, for a person to look at."""
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        temporary = self.folder / f".{name}.tmp"
        with temporary.open("w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
        temporary.rename(self.folder / f"{name}.corrupt")
        with self._lock:
            self._stats.quarantined_rows += len(rows)

    def write(self, rows: list[Row]) -> None:
        """Write ``rows`` as one spool file, first dropping the oldest rows (older files first,
        then the head of ``rows``) so the spool stays within ``max_bytes``."""
        if not rows:
            return
        lines = [json.dumps(row) + "\n" for row in rows]
        sizes = [len(line.encode()) for line in lines]
        total = sum(sizes)
        skip = 0
        while total > self.max_bytes and skip < len(lines):  # larger than the cap alone
            total -= sizes[skip]
            skip += 1
        if skip:
            logger.warning("inference log: spool cap reached, %d newest-batch rows dropped", skip)
            with self._lock:
                self._stats.dropped_rows += skip
        lines = lines[skip:]
        if not lines:
            return
        with self.lock(wait_s=SPOOL_LOCK_WAIT_S):  # not taken: over the cap for a pass
            self._make_room(total)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}-{len(lines)}rows"
        temporary = self.folder / f".{name}.tmp"
        try:
            with temporary.open("w") as handle:
                handle.writelines(lines)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.rename(self.folder / f"{name}.jsonl")
        except OSError:
            temporary.unlink(missing_ok=True)  # a partial file would only take space
            raise
        with self._lock:
            self._stats.spooled_rows += len(lines)

    def _make_room(self, needed: int) -> None:
        """Delete the oldest spool files until ``needed`` more bytes fit under the cap."""
        files = self.files()
        used = sum(p.stat().st_size for p in files)
        for path in files:
            if used + needed <= self.max_bytes:
                return
            try:
                size, lines = path.stat().st_size, self.count_lines(path)
                path.unlink()
            except FileNotFoundError:  # drained by another worker meanwhile
                continue
            used -= size
            logger.warning("inference log: spool cap reached, %d oldest rows dropped", lines)
            with self._lock:
                self._stats.spooled_rows -= lines
                self._stats.dropped_rows += lines

    @staticmethod
    def count_lines(path: Path) -> int:
        """Rows of a spool file: from its name (``...-<n>rows.jsonl``), else by reading it."""
        counted = path.stem.rsplit("-", 1)[-1]
        if counted.endswith("rows") and counted[:-4].isdigit():
            return int(counted[:-4])
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
