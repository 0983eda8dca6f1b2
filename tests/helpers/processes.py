"""Servers the tests start: stopping the embedded ones; a guard failing a session that leaks any.

Embedded PostgreSQL daemonizes (its parent becomes init) and the embedded MLflow server runs in a
session of its own, so neither dies with the test that started it. The guard recognises the
suite's processes by a variable every process started from this session inherits (even after
re-parenting), by being descendants of pytest, or by a command line pointing into pytest's
basetemp.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tasador import startup
from tasador.core.config import Settings

SESSION_VARIABLE = "TASADOR_TEST_SESSION"
# Servers a test may start: embedded PostgreSQL, MLflow (and its uvicorn), the UI, S3, the data API.
WATCHED = re.compile(r"postgres|mlflow|uvicorn|streamlit|moto|datasource")
STOP_WAIT_S = 10.0


def stop_embedded(settings: Settings) -> None:
    """Stop the embedded MLflow server and PostgreSQL a command started under the state folder."""
    startup.stop_server(settings)
    startup.stop(settings.pg_dir)


@contextmanager
def stopping_embedded(settings: Settings) -> Iterator[Settings]:
    """Yield ``settings``; then stop what was embedded under its state folder, pass or fail."""
    try:
        yield settings
    finally:
        stop_embedded(settings)


def _watched() -> dict[int, psutil.Process]:
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        if WATCHED.search(" ".join(process.info["cmdline"] or [])):
            found[process.pid] = process
    return found


@dataclass
class LeakGuard:
    """Processes already running when the session began, and the mark its own processes carry."""

    token: str
    before: set[int] = field(default_factory=set)

    @classmethod
    def begin(cls) -> LeakGuard:
        """Mark this session's future processes and remember which servers run already."""
        token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.environ[SESSION_VARIABLE] = token
        return cls(token=token, before=set(_watched()))

    def _ours(self, process: psutil.Process, roots: list[str]) -> bool:
        try:
            if process.pid == os.getpid():
                return False
            if any(p.pid == os.getpid() for p in process.parents()):
                return True
            if any(root in arg for arg in process.cmdline() for root in roots):
                return True
            return process.environ().get(SESSION_VARIABLE) == self.token
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False

    def leaked(self, roots: list[Path]) -> list[psutil.Process]:
        """Watched processes started by this session that still run (not those of other runs)."""
        texts = [str(root).rstrip("/") + "/" for root in roots]  # pytest-3 is not pytest-30
        return [
            process
            for pid, process in _watched().items()
            if pid not in self.before and self._ours(process, texts)
        ]


def describe(processes: list[psutil.Process]) -> list[str]:
    """One line per process: pid, the test that started it (when known) and its command line."""
    lines = []
    for process in processes:
        try:
            test = process.environ().get("PYTEST_CURRENT_TEST", "?")
            lines.append(f"pid {process.pid} (from {test}): {' '.join(process.cmdline())}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            lines.append(f"pid {process.pid}: gone")
    return lines


def kill(processes: list[psutil.Process]) -> None:
    """End ``processes``: a fast shutdown for PostgreSQL, SIGTERM for others, then SIGKILL."""
    for process in processes:
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            is_postgres = "postgres" in process.name()
            process.send_signal(signal.SIGINT if is_postgres else signal.SIGTERM)
    _, alive = psutil.wait_procs(processes, timeout=STOP_WAIT_S)
    for process in alive:
        with suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=STOP_WAIT_S)
