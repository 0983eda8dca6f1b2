"""Start local helper processes (the data API, later MLflow) and wait until they answer."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tasador.core.errors import ServiceUnavailable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@contextmanager
def running(
    args: Sequence[str],
    health_url: str,
    log_path: Path,
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a command in the background while the block runs; logs go to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until_healthy(health_url, timeout_s, process)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def tasador_command(*args: str) -> list[str]:
    """The `tasador` CLI of this very interpreter (works without the script on PATH)."""
    return [sys.executable, "-m", "tasador", *args]
