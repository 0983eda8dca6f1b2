"""N processes started together against one PostgreSQL, measured while they run (not a
benchmark itself: benchmarks/scale_out.py uses it).

Each level spawns N processes of a target, waits until every one is ready (connected, its study
loaded), starts them at once, and gathers what each reports after its window; meanwhile a thread
samples the server: connections held (``pg_stat_activity``) and lock waits (``pg_locks`` not
granted).
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from queue import Empty
from typing import Any, TypeVar

import psycopg

SAMPLE_S = 0.25
T = TypeVar("T")
READY_TIMEOUT_S = 600.0  # 64 spawned processes importing Optuna on 2 cores take a while


@dataclass
class Level:
    """One measured level: what the processes reported and what the sampler saw."""

    part: str
    n: int
    done: int = 0  # trials, or rows written
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    connections: list[int] = field(default_factory=list)  # clients of the measured database
    server_connections: list[int] = field(default_factory=list)  # every client backend
    lock_waits: list[int] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def row(self) -> list[str]:
        waits = self.lock_waits or [0]
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.most_common(2)) or "0"
        return [
            self.part,
            str(self.n),
            f"{self.done:,}",
            f"{self.per_s:,.1f}",
            f"{self.per_s / self.n:,.1f}",
            str(max(self.connections, default=0)),
            str(max(self.server_connections, default=0)),
            f"{sum(waits) / len(waits):.1f}",
            str(max(waits)),
            errors[:60],
        ]


HEADER = [
    "mode", "N", "done", "per s", "per s per process", "conns (db)", "conns (server)",
    "lock waits mean", "lock waits max", "errors",
]  # fmt: skip


# --- sampling PostgreSQL --------------------------------------------------------------------


@contextmanager
def sampled(level: Level, database: str, maintenance_url: str) -> Iterator[None]:
    """Sample connections and lock waits into ``level`` while the block runs."""
    stop = threading.Event()

    def run() -> None:
        with psycopg.connect(maintenance_url, autocommit=True) as conn:
            while not stop.wait(SAMPLE_S):
                mine, clients = conn.execute(
                    "SELECT count(*) FILTER (WHERE datname = %s), count(*) FROM pg_stat_activity"
                    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                    (database,),
                ).fetchone() or (0, 0)
                (waits,) = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted"
                ).fetchone() or (0,)
                level.connections.append(mine)
                level.server_connections.append(clients)
                level.lock_waits.append(waits)

    with ThreadPoolExecutor(1, thread_name_prefix="pg-sampler") as pool:
        sampler = pool.submit(run)
        try:
            yield
        finally:
            stop.set()
            sampler.result()  # a failed sampler fails the level rather than leaving it blank


def when_ready(
    results: Any, start: Any, seconds: float, setup: Callable[[], T]
) -> tuple[T, float] | None:
    """In a level's process: ``setup()``, report ready (or why it failed: then None), wait for
    the common start; return what ``setup`` made and the end of the window."""
    try:
        made = setup()
    except Exception as exc:  # e.g. the server's connection limit: counted, the level goes on
        results.put(("failed", type(exc).__name__))
        return None
    results.put(("ready",))
    start.wait()
    return made, time.monotonic() + seconds


def run_level(
    level: Level,
    target: Callable[..., None],
    args: tuple[Any, ...],
    seconds: float,
    database: str,
    maintenance_url: str,
) -> Level:
    """Start ``level.n`` processes of ``target(index, *args, start, results, seconds)``, start
    them together once all are ready, and gather what they report."""
    context = multiprocessing.get_context("spawn")  # as the search starts its workers
    start, results = context.Event(), context.Queue()
    processes = [
        context.Process(target=target, args=(i, *args, start, results, seconds), daemon=True)
        for i in range(level.n)
    ]
    for process in processes:
        process.start()
    try:
        ready, deadline = 0, time.monotonic() + READY_TIMEOUT_S
        while ready < level.n:
            kind, *payload = results.get(timeout=max(1.0, deadline - time.monotonic()))
            if kind == "ready":
                ready += 1
            else:  # a process that could not even start (e.g. too many connections)
                level.errors.update({payload[0]: 1})
                ready += 1
        with sampled(level, database, maintenance_url):
            began = time.monotonic()
            start.set()
            reported = level.errors.total()
            while reported < level.n and time.monotonic() < began + seconds + 120:
                try:
                    kind, done, errors = results.get(timeout=1.0)
                except Empty:
                    continue
                reported += 1
                level.done += done
                level.errors.update(errors)
            level.seconds = time.monotonic() - began
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    level.seconds = min(level.seconds, seconds)  # the window each process counted in
    return level


def stops_at(levels: list[Level]) -> str:
    """The first N whose throughput is not 10% above the previous N's."""
    for before, level in itertools.pairwise(levels):
        if level.per_s < 1.1 * before.per_s:
            return f"stops scaling at N={level.n} ({before.per_s:,.1f} -> {level.per_s:,.1f}/s)"
    return f"still scaling at N={levels[-1].n}" if levels else "nothing measured"


def max_connections(url: str) -> str:
    with psycopg.connect(url) as conn:
        (value,) = conn.execute("SHOW max_connections").fetchone() or ("?",)
    return str(value)
