"""Where the loop's time and memory go: one JSON line per named step, when asked for.

``with step("clean"):`` (or ``@step("study")`` on a function) appends to the file named by the
``TASADOR_TIMINGS_FILE`` setting a line like::

    {"step": "clean", "wall_s": 1.9, "cpu_s": 1.7, "peak_rss_mb": 412.0, "pid": 812, ...}

with the step's wall time, the CPU time of the process and of the children it waited for, and
the process's peak resident memory during the step. Without the setting a step costs nothing
but a settings look-up. Steps may nest: an outer step's peak covers its inner steps'.

Peak memory *during a step* needs the kernel's high-water mark reset at its start (Linux >= 4.0:
writing 5 to ``/proc/self/clear_refs``). Where that is not possible the figure is the process's
peak so far (``ru_maxrss``), which is an upper bound and says so (``peak_rss_exact`` false).
Fields the step's caller adds to the yielded dict (rows, a batch id) are written too.
"""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tasador.core.config import get_settings

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_open_peaks: list[list[float]] = []  # per open step of this process: its peak so far (MB)
_write_lock = threading.Lock()


def timings_file() -> Path | None:
    """Where steps are recorded (None: they are not)."""
    return get_settings().timings_file


def _high_water_mb() -> float | None:
    """The process's peak resident memory since the last reset, from /proc (None: no /proc)."""
    try:
        with _STATUS.open() as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_high_water() -> bool:
    """Restart the kernel's peak-memory count from the current size; False if not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _max_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


def _children_cpu_s() -> float:
    times = os.times()
    return times.children_user + times.children_system


def record(entry: dict[str, Any], path: Path | None = None) -> None:
    """Append one JSON line to the timings file (a no-op when none is set)."""
    path = path or timings_file()
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, default=str) + "\n"
    with _write_lock, path.open("a") as out:  # one write per line: lines of processes interleave
        out.write(line)


@contextmanager
def step(name: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Time a named step and record it (see the module docstring); yields the extra fields."""
    path = timings_file()
    extra: dict[str, Any] = dict(fields)
    if path is None:
        yield extra
        return
    # Fold the memory used so far into the open steps' peaks before the mark is reset.
    current = _high_water_mb()
    for peak in _open_peaks:
        peak[0] = max(peak[0], current or 0.0)
    exact = current is not None and _reset_high_water()
    own = [0.0]
    _open_peaks.append(own)
    started_at = time.time()
    wall, cpu, children_cpu = time.perf_counter(), time.process_time(), _children_cpu_s()
    failed = False
    try:
        yield extra
    except BaseException:
        failed = True
        raise
    finally:
        wall_s = time.perf_counter() - wall
        cpu_s = time.process_time() - cpu
        child_s = _children_cpu_s() - children_cpu
        _open_peaks.remove(own)
        high = _high_water_mb() if exact else None
        peak_mb = max(own[0], high) if high is not None else _max_rss_mb(resource.RUSAGE_SELF)
        for peak in _open_peaks:
            peak[0] = max(peak[0], peak_mb)
        record(
            {
                "step": name,
                "started_at": round(started_at, 3),
                "wall_s": round(wall_s, 4),
                "cpu_s": round(cpu_s + child_s, 4),
                "children_cpu_s": round(child_s, 4),
                "peak_rss_mb": round(peak_mb, 1),
                "peak_rss_exact": exact,
                "children_max_rss_mb": round(_max_rss_mb(resource.RUSAGE_CHILDREN), 1),
                "pid": os.getpid(),
                "failed": failed,
                **extra,
            },
            path,
        )


def read(path: Path) -> list[dict[str, Any]]:
    """Every record in a timings file, in the order written (none if it does not exist)."""
    if not path.exists():
        return []
    with path.open() as lines:
        return [json.loads(line) for line in lines if line.strip()]
