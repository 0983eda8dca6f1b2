"""Access (docs/deployment.md, "Access"): who may write what a pickle-loading service runs.

A registered model is a pickle that serving and the Airflow workers load, so writing to MLflow's
registry is running code in them, with their database rights. The stack keeps MLflow behind
basic auth with read-only identities for the readers, publishes ports on loopback by default,
gives serving and the UI least-privilege database roles, and puts no password on a command line.
"""

from __future__ import annotations

import configparser
import re
import stat
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import errors, sql
from sqlalchemy.engine import make_url

from serving.inference_log import Entry, write_rows
from tasador.core import migrations, shadow_store
from tasador.core.db import sqlalchemy_url
from tests.helpers import compose
from tests.helpers.docker_scripts import AIRFLOW_INIT, MLFLOW_INIT, MLFLOW_START
from tests.helpers.dockerfile import DOCKER_DIR, final_stage, start_command
from tests.helpers.shadow import rows as shadow_rows

ENV = compose.env_file()
RAW = compose.load()
MODEL, _ = compose.resolved(ENV)
SERVICES: dict[str, dict[str, Any]] = MODEL["services"]
PUBLISH = "${PUBLISH_ADDRESS:-127.0.0.1}:"
AIRFLOW = sorted(n for n in SERVICES if n.startswith("airflow-"))
READERS = {"serving": "MLFLOW_SERVING", "app": "MLFLOW_UI"}


# --- Published ports -----------------------------------------------------------------------------


def test_every_published_port_binds_the_publish_address_loopback_by_default() -> None:
    for name, service in RAW["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith(PUBLISH), (
                f"{name}: publish on {PUBLISH}<port>:<port>, not {port!r}"
            )
    assert ENV["PUBLISH_ADDRESS"] == "127.0.0.1"
    unset, _ = compose.resolved({k: v for k, v in ENV.items() if k != "PUBLISH_ADDRESS"})
    for name, service in unset["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_the_data_api_and_the_databases_are_not_published() -> None:
    for name in ("datasource", "valkey", "seaweedfs", "seaweedfs-init", "mlflow-init", *AIRFLOW):
        if name != "airflow-api-server":
            assert not SERVICES[name].get("ports"), name
    assert not any(SERVICES[n].get("ports") for n in SERVICES if n.startswith("postgres-"))


# --- No secret on a command line --------------------------------------------------------------


def _with_distinct_secrets() -> dict[str, str]:
    """.env.example with a distinct, recognizable value for every placeholder."""
    env = dict(ENV)
    for key, value in ENV.items():
        if "change-me" in value or key.endswith("FERNET_KEY"):
            env[key] = f"s3cr3t{key.lower().replace('_', '')}{uuid.uuid4().hex[:8]}"
    return env


def _command_lines(service: dict[str, Any]) -> list[str]:
    lines = []
    for key in ("command", "entrypoint"):
        value = service.get(key)
        if value:
            lines.append(" ".join(value) if isinstance(value, list) else value)
    test = (service.get("healthcheck") or {}).get("test")
    if test:
        lines.append(" ".join(test) if isinstance(test, list) else test)
    return lines


def test_no_command_holds_a_password_or_a_url_with_credentials() -> None:
    env = _with_distinct_secrets()
    model, _ = compose.resolved(env)
    secrets = {k: v for k, v in env.items() if v != ENV.get(k)}
    assert secrets
    for name, service in model["services"].items():
        lines = _command_lines(service)
        image = compose.own_image(RAW["services"][name])
        if image and not service.get("command"):
            lines.append(" ".join(start_command(final_stage(image))))
        for line in lines:
            leaked = [k for k, v in secrets.items() if v and v in line]
            assert not leaked, f"{name}: {leaked} on its command line"
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", line), f"{name}: credentials in a URL"


def test_optuna_dashboard_gets_its_storage_from_the_environment() -> None:
    service = SERVICES["optuna-dashboard"]
    assert "command" not in service and "entrypoint" not in service
    command = start_command(final_stage("optuna-dashboard"))
    assert "TASADOR_OPTUNA_STORAGE_URL" in service["environment"]
    assert not any("://" in arg for arg in command)
    source = (DOCKER_DIR / "optuna-dashboard" / "start.py").read_text()
    assert "execvp" not in source  # the URL would be the new process's argument


# --- MLflow: basic auth, one identity per client ----------------------------------------------


def test_mlflow_runs_the_basic_auth_app_and_reads_by_default() -> None:
    command = start_command(final_stage("mlflow"))
    assert "mlflow" not in RAW["services"]["mlflow"].get("command", [])
    assert command[command.index("--app-name") + 1] == "basic-auth"
    env = SERVICES["mlflow"]["environment"]
    assert env["MLFLOW_AUTH_DEFAULT_PERMISSION"] == "READ"
    raw_env = RAW["services"]["mlflow"]["environment"]
    assert raw_env["MLFLOW_AUTH_ADMIN_USERNAME"] == "${MLFLOW_ADMIN_USER}"
    assert raw_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "${MLFLOW_ADMIN_PASSWORD}"


def test_every_mlflow_client_has_its_own_identity_and_readers_only_read() -> None:
    init_env = SERVICES["mlflow-init"]["environment"]
    training = init_env["MLFLOW_TRAINING_USER"]
    identities = {}
    for name in [*AIRFLOW, *READERS]:
        env = SERVICES[name]["environment"]
        raw_env = RAW["services"][name]["environment"]
        user, password = env["MLFLOW_TRACKING_USERNAME"], raw_env["MLFLOW_TRACKING_PASSWORD"]
        assert user and password.startswith("${"), name
        identities[name] = (user, password)
    for name in AIRFLOW:
        assert identities[name] == (training, "${MLFLOW_TRAINING_PASSWORD}"), name
    for name, prefix in READERS.items():
        user, password = identities[name]
        assert user == init_env[f"{prefix}_USER"] != training, name
        assert password == f"${{{prefix}_PASSWORD}}", name
    assert len({identities[n] for n in READERS}) == len(READERS)
    admin = SERVICES["mlflow"]["environment"]["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert admin not in {user for user, _ in identities.values()}
    # mlflow-init logs in as the admin, and every client waits for its grants.
    assert init_env["MLFLOW_TRACKING_USERNAME"] == admin
    for name in ("airflow-worker", *READERS):
        assert "mlflow-init" in SERVICES[name]["depends_on"], name
    assert MLFLOW_INIT.WRITER == "TRAINING"
    assert {f"MLFLOW_{r}" for r in MLFLOW_INIT.READERS} == set(READERS.values())


def test_the_mlflow_placeholders_satisfy_mlflows_password_policy() -> None:
    # MLflow refuses passwords under 12 characters even in the dev profile.
    for key in ("ADMIN", "TRAINING", "SERVING", "UI"):
        assert len(ENV[f"MLFLOW_{key}_PASSWORD"]) >= 12, key


def test_the_auth_config_is_private_and_what_mlflow_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "MLFLOW_AUTH_DATABASE_URI": "postgresql://mlflow:pw%2Fin-file-only@db:5432/mlflow",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "a-long-admin-password",
    }
    assert MLFLOW_START.configuration_errors(env) == []
    assert MLFLOW_START.configuration_errors({**env, "MLFLOW_AUTH_DEFAULT_PERMISSION": "ALL"})
    path = MLFLOW_START.write_auth_config(env, tmp_path / "auth")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    from mlflow.server.auth.config import read_auth_config

    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "a-long-admin-password")
    config = read_auth_config()
    assert config.default_permission == "READ"
    assert config.database_uri == env["MLFLOW_AUTH_DATABASE_URI"]
    assert config.admin_username == "admin"
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read(path)
    assert "admin_password" not in parsed["mlflow"]  # MLflow reads it from the environment


# --- Least-privilege database roles ---------------------------------------------------------


def test_serving_and_the_ui_connect_with_their_own_roles() -> None:
    roles = AIRFLOW_INIT.DB_ROLES
    urls = {
        ("serving", "TASADOR_RAW_DB_URL"): roles["serving"],
        ("app", "TASADOR_RAW_DB_URL"): roles["ui"],
        ("app", "TASADOR_CLEAN_DB_URL"): roles["ui"],
    }
    for (service, variable), role in urls.items():
        url = make_url(SERVICES[service]["environment"][variable])
        assert url.username == role, f"{service}.{variable}"
    assert "TASADOR_CLEAN_DB_URL" not in SERVICES["serving"]["environment"]
    owner = make_url(SERVICES["airflow-init"]["environment"]["TASADOR_RAW_DB_URL"]).username
    assert owner not in roles.values()
    init_env = SERVICES["airflow-init"]["environment"]
    assert {"SERVING_DB_PASSWORD", "UI_DB_PASSWORD"} <= set(init_env)


@pytest.fixture
def roles() -> Iterator[tuple[dict[str, str], dict[str, str], list[str]]]:
    """Role names unique to this test (roles are server-wide), dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = {key: f"{key}_{suffix}" for key in AIRFLOW_INIT.DB_ROLES}
    passwords = {key: f"pw-{key}-{uuid.uuid4().hex}" for key in AIRFLOW_INIT.DB_ROLES}
    databases: list[str] = []
    yield names, passwords, databases
    for url in databases:
        with psycopg.connect(url, autocommit=True) as conn:
            existing = [
                n for n in names.values()
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (n,)).fetchone()
            ]  # fmt: skip
            if existing:
                idents = sql.SQL(", ").join(map(sql.Identifier, existing))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(idents))
    if databases:
        with psycopg.connect(databases[0], autocommit=True) as conn:
            for name in names.values():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _as(url: str, role: str, password: str) -> str:
    return make_url(url).set(username=role, password=password).render_as_string(False)


def _refused(url: str, statement: str) -> bool:
    with psycopg.connect(url) as conn:
        try:
            conn.execute(statement)
        except errors.InsufficientPrivilege:
            return True
    return False


def test_serving_may_only_insert_inference_rows(
    make_database: Callable[[str], str], roles: tuple
) -> None:
    names, passwords, databases = roles
    url = make_database("raw")
    databases.append(url)
    migrations.upgrade(url, "raw")
    AIRFLOW_INIT.grant_roles(url, "raw", passwords, names)
    AIRFLOW_INIT.grant_roles(url, "raw", passwords, names)  # every start of airflow-init

    serving = _as(url, names["serving"], passwords["serving"])
    entry = Entry(
        endpoint="/predict",
        status_code=422,
        requested_at=datetime.now(UTC),
        latency_ms=1.5,
        body='{"bad": true}',
    )
    engine = sa.create_engine(sqlalchemy_url(serving), poolclass=sa.NullPool)
    write_rows(engine, entry.to_rows())  # serving's own writer: temp table, COPY, INSERT
    shadowed = shadow_rows([1.0, 1.1], "Texas")
    assert shadow_store.write(engine, shadowed) == 2  # the shadow challenger's writer
    assert shadow_store.write(engine, shadowed) == 0  # its ON CONFLICT reads only the key
    engine.dispose()
    with psycopg.connect(url) as conn:  # the owner sees the row
        assert conn.execute("SELECT count(*) FROM inference_requests").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM shadow_predictions").fetchone() == (2,)
    with psycopg.connect(serving) as conn:  # what serving.live_drift reads for /metrics
        conn.execute(
            "SELECT alarm, drift_share, rows, checked_at FROM live_drift_checks ORDER BY id"
        ).fetchall()

    for statement in (
        "SELECT * FROM batch_rows",
        "SELECT * FROM batches",
        "SELECT inputs, prediction FROM inference_requests",
        "UPDATE inference_requests SET prediction = 0",
        "DELETE FROM inference_requests",
        "SELECT challenger_prediction FROM shadow_predictions",
        "DELETE FROM shadow_predictions",
        "SELECT summary, result FROM live_drift_checks",
        "DELETE FROM live_drift_checks",
        "INSERT INTO batches DEFAULT VALUES",
        "CREATE TABLE planted (x int)",
    ):
        assert _refused(serving, statement), f"serving may run: {statement}"

    ui = _as(url, names["ui"], passwords["ui"])
    with psycopg.connect(ui) as conn:
        conn.execute("SELECT count(*) FROM batch_rows").fetchone()
        assert conn.execute("SELECT count(*) FROM inference_requests").fetchone() == (1,)
    assert _refused(ui, "DELETE FROM inference_requests")


def test_the_ui_only_reads_clean(make_database: Callable[[str], str], roles: tuple) -> None:
    names, passwords, databases = roles
    url = make_database("clean")
    databases.append(url)
    migrations.upgrade(url, "clean")
    AIRFLOW_INIT.grant_roles(url, "clean", passwords, names)
    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        conn.execute("CREATE TABLE later_migration (x int)")  # default privileges cover it
        conn.commit()
    ui = _as(url, names["ui"], passwords["ui"])
    with psycopg.connect(ui) as conn:
        for table in [*tables, "later_migration"]:
            conn.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(table)))
    assert _refused(ui, "INSERT INTO later_migration VALUES (1)")
    assert _refused(ui, "CREATE TABLE planted (x int)")
    # serving has no role on CLEAN at all.
    assert "serving" not in AIRFLOW_INIT.ROLES_OF["clean"]


def test_airflow_init_needs_the_role_passwords() -> None:
    env = {k: "x" * 20 for k in AIRFLOW_INIT.REQUIRED} | {
        "AIRFLOW_ADMIN_USER": "admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "TASADOR_RAW_DB_URL": "postgresql://o:p@h/raw",
        "TASADOR_CLEAN_DB_URL": "postgresql://o:p@h/clean",
    }
    assert AIRFLOW_INIT.configuration_errors(env) == [
        "SERVING_DB_PASSWORD is not set",
        "UI_DB_PASSWORD is not set",
    ]


def test_the_docs_explain_access() -> None:
    doc = (DOCKER_DIR.parent / "docs" / "deployment.md").read_text()
    section = doc.split("## Access", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "pickle",
        "basic-auth",
        "PUBLISH_ADDRESS",
        "tasador_serving",
        "TASADOR_SERVING_API_KEY",
        "embedded",
    ):
        assert needle in section, needle
    reliability = (DOCKER_DIR.parent / "docs" / "reliability.md").read_text()
    access = reliability.split("## Access", 1)[1]
    assert "| fault | what happens now | test |" in access
