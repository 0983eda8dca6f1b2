"""The MLflow tracking server: the configured one, or an embedded one started on demand.

Like the embedded PostgreSQL, the embedded MLflow server is started by the first command that
needs it and keeps running, so later commands (and several search workers at once) reuse it.
Its metadata goes to the ``mlflow`` database of the configured or embedded PostgreSQL (psycopg2
driver: MLflow's migrations are tested with it), its artifacts to
``settings.mlflow_artifacts_destination`` (e.g. ``s3://bucket/path``) or ``<state>/mlflow/
artifacts``, proxied by the server so clients need no storage credentials. Its port, pid and
configuration are recorded in ``<state>/mlflow/server.json``; a file lock makes concurrent
starters agree on one server.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tasador import db
from tasador.config import Settings, get_settings

START_TIMEOUT_S = 180.0  # the first start creates MLflow's schema (a few dozen migrations)
_SERVER_WORKERS = "1"  # one uvicorn process (requests run in its thread pool): fast start, light


def tracking_uri(settings: Settings | None = None) -> str:
    """The configured tracking URI, else the embedded server's (started if needed)."""
    settings = settings or get_settings()
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    return ensure_server(settings)


def configure(settings: Settings | None = None) -> str:
    """Point this process's MLflow client at the tracking server; return its URI.

    Also allows deserializing models from the registry: MLflow 3.17 refuses to load any sklearn
    model (pickle or skops) unless ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is true. Our registry
    is written only by our own training code, so its models are trusted.
    """
    import mlflow

    uri = tracking_uri(settings)
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _state(settings: Settings) -> Path:
    path = (settings.state_dir / "mlflow").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _artifacts(settings: Settings) -> str:
    return settings.mlflow_artifacts_destination or (_state(settings) / "artifacts").as_uri()


def _fingerprint(backend: str, artifacts: str) -> str:
    """Identifies the server's configuration without writing the database password to disk."""
    return hashlib.sha256(f"{backend}\n{artifacts}".encode()).hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _healthy(uri: str) -> bool:
    try:
        return httpx.get(f"{uri}/health", timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def _alive(pid: int) -> bool:
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
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_server(settings: Settings) -> str:
    """Start the embedded server unless one with this configuration already answers."""
    state = _state(settings)
    backend = db.sqlalchemy_url(db.database_url("mlflow", settings), driver="psycopg2")
    artifacts = _artifacts(settings)
    fingerprint = _fingerprint(backend, artifacts)
    record = state / "server.json"
    with _locked(state / "server.lock"):
        if record.exists():
            info = json.loads(record.read_text())
            if info["fingerprint"] == fingerprint and _alive(info["pid"]) and _healthy(info["uri"]):
                return info["uri"]
            _stop_recorded(record)  # stale, or started with other settings
        port = _free_port()
        uri = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            # Passed by environment, not argv, so the URL's password stays out of `ps`.
            "MLFLOW_BACKEND_STORE_URI": backend,
            "MLFLOW_ARTIFACTS_DESTINATION": artifacts,
        }
        env.pop("MLFLOW_RUN_ID", None)
        # The job runner (GenAI scoring jobs, unused here) forks a dozen huey consumers per
        # server: on two cores they cost more than the tracking itself.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        args = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            _SERVER_WORKERS,
        ]
        with (state / "server.log").open("ab") as log:
            process = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_healthy(uri, process, state / "server.log")
        record.write_text(json.dumps({"pid": process.pid, "uri": uri, "fingerprint": fingerprint}))
        return uri


def _wait_healthy(uri: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the MLflow server exited with code {process.returncode}:\n{tail}")
        if _healthy(uri):
            return
        time.sleep(0.5)
    process.kill()
    raise TimeoutError(f"the MLflow server at {uri} did not answer within {START_TIMEOUT_S:.0f}s")


def _stop_recorded(record: Path) -> bool:
    info = json.loads(record.read_text())
    record.unlink()
    pid = info["pid"]
    if not _alive(pid):
        return False
    # The server was started in its own session: end its whole group (uvicorn workers too).
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    return True


def stop_server(settings: Settings | None = None) -> bool:
    """Stop the embedded MLflow server if it runs; True when it was running."""
    state = _state(settings or get_settings())
    record = state / "server.json"
    with _locked(state / "server.lock"):
        return record.exists() and _stop_recorded(record)
