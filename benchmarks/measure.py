"""Helpers the benchmarks share (not a benchmark itself): peak memory of every process involved,
and tables of the step timings that ``tasador.core.timings`` records."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil


def load_note() -> str:
    """The machine's load, to print beside every figure (other work shares the cores)."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


@contextmanager
def private_mlflow(prefix: str, **settings: Any) -> Iterator[Any]:
    """Settings (``settings`` applied) pointing at a private embedded MLflow server, with the
    embedded PostgreSQL behind it, under a temporary state folder; all stopped and removed at
    the end, also on Ctrl-C."""
    from tasador import startup
    from tasador.core.config import Settings

    state = Path(tempfile.mkdtemp(prefix=prefix))
    base = Settings(state_dir=state, _env_file=None)
    try:
        uri = startup.ensure_server(base)
        yield base.updated(**{"mlflow_tracking_uri": uri, **settings})
    finally:
        startup.stop_server(base)
        startup.stop(base.pg_dir)
        shutil.rmtree(state, ignore_errors=True)


def postmaster_pid(pg_dir: Path) -> int | None:
    """The embedded PostgreSQL's main process (it is started detached, not as our child)."""
    try:
        pid = int((pg_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 else None  # the file is read while PostgreSQL writes it


def _label(process: psutil.Process) -> str:
    try:
        args = process.cmdline()
    except psutil.Error:
        return "?"
    if not args:
        return process.name()
    text = " ".join(args)
    for known in ("airflow", "mlflow", "uvicorn", "datasource", "postgres", "multiprocessing"):
        if known in text:
            return f"{known}: {os.path.basename(args[0])} {' '.join(args[1:4])}"[:80]
    return text[:80]


class PeakMemory:
    """Samples the resident memory of process trees in a thread; keeps each process's peak.

    ``roots`` are pids whose whole tree is watched (children come and go: Airflow task
    processes, search workers); ``extra`` gives more roots at each sample (e.g. a PostgreSQL
    server started meanwhile). A process that lives less than one interval may be missed.
    """

    def __init__(
        self,
        roots: Iterable[int] = (),
        extra: Any = None,
        interval_s: float = 0.2,
    ) -> None:
        self.roots = list(roots)
        self.extra = extra
        self.interval_s = interval_s
        self.peaks: dict[int, tuple[float, str]] = {}  # pid -> (peak MB, label)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _processes(self) -> list[psutil.Process]:
        roots = list(self.roots) + [p for p in (self.extra() if self.extra else []) if p]
        found: dict[int, psutil.Process] = {}
        for pid in roots:
            try:
                root = psutil.Process(pid)
                for process in [root, *root.children(recursive=True)]:
                    found[process.pid] = process
            except psutil.Error:
                continue
        return list(found.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            for process in self._processes():
                try:
                    rss = process.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                peak, label = self.peaks.get(process.pid, (0.0, ""))
                if rss > peak:
                    self.peaks[process.pid] = (rss, label or _label(process))
            self._stop.wait(self.interval_s)

    def largest(self, n: int = 5) -> list[tuple[float, int, str]]:
        """The ``n`` processes with the highest peak: (MB, pid, label)."""
        ranked = sorted(((mb, pid, label) for pid, (mb, label) in self.peaks.items()), reverse=True)
        return ranked[:n]


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as an aligned text table; the first row is the header, numbers right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def cell(text: str, i: int) -> str:
        numeric = text.replace(",", "").replace(".", "").replace("-", "").isdigit()
        return text.rjust(widths[i]) if numeric else text.ljust(widths[i])

    lines = ["  ".join(cell(c, i) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
