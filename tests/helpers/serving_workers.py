"""`tasador serve` as users run it (a subprocess with worker processes), and asking which
version each worker serves."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tasador.core.config import Settings, settings_env
from tasador.core.services import free_port, tasador_command


@contextmanager
def tasador_serve(settings: Settings, workers: int) -> Iterator[str]:
    """`tasador serve --workers N` as a subprocess; SIGTERM (and a wait) when the block ends."""
    port = free_port()
    env = {**os.environ, **settings_env(settings)}
    command = tasador_command("serve", "--port", str(port), "--workers", str(workers))
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def ready(url: str) -> dict[str, Any] | None:
    """/ready on a fresh connection (so the kernel may hand it to any worker)."""
    try:
        response = httpx.get(f"{url}/ready", timeout=5, headers={"Connection": "close"})
    except httpx.TransportError:
        return None
    return response.json() if response.status_code in (200, 503) else None


def workers_serving(url: str, tries: int = 60) -> dict[int, dict[str, Any]]:
    """Each worker's latest /ready answer, by pid, from ``tries`` fresh connections."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(tries):
        body = ready(url)
        if body is not None:
            seen[body["worker"]["pid"]] = body
    return seen


def versions(seen: dict[int, dict[str, Any]]) -> set[str | None]:
    return {(body["model"] or {}).get("version") for body in seen.values()}
