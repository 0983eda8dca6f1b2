""".env.example in sync with the settings object, and the secrets guard that reads it."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasador.core.config import Settings
from tests.helpers import compose
from tests.helpers.dockerfile import DOCKER_DIR, env_vars, final_stage

FIELDS = {f"TASADOR_{name.upper()}": info for name, info in Settings.flat_fields().items()}
DOCUMENTED = compose.documented_values()
ENV = compose.env_file()
MODEL, USED = compose.resolved(ENV)
RAW = compose.load()
CHECK_SECRETS = DOCKER_DIR / "common" / "check_secrets.py"


def test_every_setting_is_in_env_example() -> None:
    missing = sorted(set(FIELDS) - set(DOCUMENTED))
    assert not missing, "add to .env.example (commented out, with the default): " + ", ".join(
        missing
    )


def _stack_value(variable: str) -> str | None:
    """What docker-compose.yml gives a service for a setting left unset in .env."""
    for service in MODEL["services"].values():
        value = (service.get("environment") or {}).get(variable)
        if value is not None:
            return value
    return None


def test_env_example_shows_the_defaults() -> None:
    """A commented-out line shows the value in force: the stack's own, else the setting's."""
    for variable, info in FIELDS.items():
        if info.default is None or variable not in DOCUMENTED:
            continue
        if (wired := _stack_value(variable)) is not None:
            assert DOCUMENTED[variable] == wired, f"{variable}: the stack uses {wired!r}"
            continue
        name = variable.removeprefix("TASADOR_").lower()
        shown = Settings(_env_file=None, **{name: DOCUMENTED[variable]})
        assert shown.flat()[name] == info.default, f"{variable}: default is {info.default!r}"


def test_no_unknown_tasador_variables() -> None:
    named = {n for n in compose.documented_names() | USED if n.startswith("TASADOR_")}
    for service in RAW["services"].values():
        named |= {k for k in service.get("environment") or {} if k.startswith("TASADOR_")}
    assert named <= set(FIELDS), f"not settings: {sorted(named - set(FIELDS))}"


def test_every_setting_reaches_the_stack() -> None:
    reach = set(USED)  # e.g. TASADOR_MLFLOW_BACKEND_URL configures the MLflow server
    for service in RAW["services"].values():
        reach |= set(service.get("environment") or {})
    for image in ("airflow", "serving"):
        reach |= set(env_vars(final_stage(image)))
    missing = sorted(set(FIELDS) - reach)
    assert not missing, f"add to x-tasador-settings in docker-compose.yml: {missing}"


@pytest.mark.parametrize("service", ["airflow-worker", "serving", "app", "datasource"])
def test_services_get_valid_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TASADOR_"):
            monkeypatch.delenv(key)
    dotenv = {k: v for k, v in DOCUMENTED.items() if k in FIELDS} | ENV  # every knob set
    env = compose.service_env(MODEL["services"][service], dotenv)
    for key, value in env.items():
        if key.startswith("TASADOR_"):
            monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    if service != "datasource":
        assert settings.mlflow.mlflow_tracking_uri == "http://mlflow:5000"
    if "TASADOR_RAW_DB_URL" in env:
        assert "@postgres-raw:5432/raw" in settings.databases.raw_db_url.get_secret_value()


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK_SECRETS)], env=env, capture_output=True, text=True
    )


def _guarded(dotenv: dict[str, str]) -> dict[str, str]:
    """The environment compose gives the secrets-check service."""
    model, _ = compose.resolved(dotenv)
    return compose.service_env(model["services"]["secrets-check"], dotenv)


def _generated() -> dict[str, str]:
    env = {
        k: ("s3cr3t-" + os.urandom(12).hex() if v.startswith("change-me") else v)
        for k, v in ENV.items()
    }
    env["AIRFLOW_FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return env


def test_the_placeholders_are_refused_outside_dev() -> None:
    result = _check(_guarded(ENV))
    assert result.returncode == 1
    for name in ("RAW_DB_PASSWORD", "S3_ADMIN_SECRET_KEY", "AIRFLOW_FERNET_KEY"):
        assert name in result.stderr
    assert "change-me" not in result.stderr  # names, never values


def test_the_placeholders_are_accepted_in_the_dev_profile() -> None:
    result = _check(_guarded({**ENV, "DEPLOY_PROFILE": "dev"}))
    assert result.returncode == 0, result.stderr
    assert "DEPLOY_PROFILE=dev" in result.stdout


def test_real_secrets_pass() -> None:
    result = _check(_guarded(_generated()))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [("VALKEY_PASSWORD", "tiny-pw"), ("AIRFLOW_FERNET_KEY", "not-a-fernet-key-at-all-0123456789")],
)
def test_weak_secrets_are_refused(name: str, value: str) -> None:
    result = _check(_guarded({**_generated(), name: value}))
    assert result.returncode == 1
    assert name in result.stderr
    assert value not in result.stderr


def test_airflow_init_refuses_an_admin_it_would_not_declare(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "AIRFLOW_ADMIN_USER": "alice",
        "AIRFLOW_ADMIN_PASSWORD": "x" * 20,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "bob:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "passwords.json"),
    }
    result = subprocess.run(
        [sys.executable, str(DOCKER_DIR / "airflow" / "init.py")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "'alice' is not among the users" in result.stderr
    assert not (tmp_path / "passwords.json").exists()
