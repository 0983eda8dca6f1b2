"""Start local helper processes (the data API, Airflow's api-server), wait until they answer, and
stop them with everything they started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import httpx

from tasador.core.errors import ServiceUnavailable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (signal 0 checks without sending anything)."""
    try:
        # Reap it first if it is our own exited child (a zombie still answers signals).
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def wait_until_healthy(
    url: str, timeout_s: float = 60.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceUnavailable(
                f"the process behind {url} exited with code {process.returncode}"
            )
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise ServiceUnavailable(f"{url} did not become healthy within {timeout_s:.0f}s")


STOP_WAIT_S = 15.0


@contextmanager
def running(
    args: Sequence[str],
    health_url: str,
    log_path: Path,
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
    own_group: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a command in the background while the block runs; logs go to ``log_path``.

    With ``own_group`` it runs in a process group of its own, ended as a whole afterwards: for a
    command that starts processes of its own (a server with workers)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=own_group
        )
        try:
            wait_until_healthy(health_url, timeout_s, process)
            yield process
        finally:
            if own_group:
                stop_group(process)
            else:
                stop_process(process)


def run_in_own_group(args: Sequence[str], env: dict[str, str], output: IO[bytes]) -> int:
    """Run a command to its end in a process group of its own; return its exit code.

    Whatever it started is ended with it, also when the wait is interrupted (Ctrl-C, or the
    SIGTERM handler of the caller raising): no orphaned worker outlives the command. A Ctrl-C
    at the terminal reaches the caller only, which then ends the group."""
    process = subprocess.Popen(
        list(args), stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        return process.wait()
    finally:
        stop_group(process)


def _group_alive(process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is None:
        return True
    try:
        os.killpg(process.pid, 0)  # a member left: the leader's pid is the group's id
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process(process: subprocess.Popen[bytes], wait_s: float = STOP_WAIT_S) -> None:
    """End one process: SIGTERM, then SIGKILL if it has not ended after ``wait_s``."""
    process.terminate()
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(wait_s)


def stop_group(process: subprocess.Popen[bytes], wait_s: float = STOP_WAIT_S) -> None:
    """End the process group that ``process`` leads (started with ``start_new_session``):
    SIGTERM, then SIGKILL for what is left after ``wait_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + wait_s
        while _group_alive(process) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _group_alive(process):
            return


def tasador_command(*args: str) -> list[str]:
    """The `tasador` CLI of this very interpreter (works without the script on PATH)."""
    return [sys.executable, "-m", "tasador", *args]
