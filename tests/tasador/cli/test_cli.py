"""The `tasador` command as a user runs it: a real data API process, the real CLI processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tasador.core import services
from tasador.core.config import Settings, settings_env
from tasador.core.errors import ServiceUnavailable

pytestmark = pytest.mark.slow  # every test runs the real `tasador` command as a process


@pytest.fixture
def cli_env(settings: Settings) -> Iterator[dict[str, str]]:
    port = services.free_port()
    env = {**settings_env(settings), "TASADOR_DATA_API_URL": f"http://127.0.0.1:{port}"}
    command = services.tasador_command(
        "datasource", "--port", str(port), "--scenario", "drift-zoo", "--scale", "0.01"
    )

    full_env = {**os.environ, **env}
    log = settings.state_dir / "datasource.log"
    with services.running(command, f"http://127.0.0.1:{port}/health", log, env=full_env):
        yield full_env


def tasador(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        services.tasador_command(*args), env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.server
def test_collect_then_status_just_works(cli_env):
    first = tasador(cli_env, "collect")
    assert first.returncode == 0, first.stderr
    assert "RAW batch id 1" in first.stdout and "cleaned:" in first.stdout
    assert tasador(cli_env, "collect").returncode == 0
    report = json.loads(tasador(cli_env, "status").stdout)
    assert json.loads(tasador(cli_env, "status", "--json").stdout)["batches"] == report["batches"]
    assert [b["batch_number"] for b in report["batches"]] == [0, 1]
    assert all(b["rows_clean"] > 0 for b in report["batches"])
    table = tasador(cli_env, "status", "--table").stdout
    assert table.splitlines()[0].split()[:3] == ["batch", "group", "number"]


@pytest.mark.server
def test_a_skipped_batch_shows_in_status_and_recover_fills_it(cli_env):
    api = cli_env["TASADOR_DATA_API_URL"]
    lost = httpx.get(f"{api}/data", params={"group_number": 1}, timeout=60)  # never stored
    assert lost.json()["batch_number"] == 0
    collected = tasador(cli_env, "collect")
    assert collected.returncode == 0, collected.stderr
    assert "skipped batch numbers 0" in collected.stdout
    report = json.loads(tasador(cli_env, "status", "--no-models").stdout)
    assert [(g["group"], g["batch_number"]) for g in report["gaps"]] == [(1, 0)]
    table = tasador(cli_env, "status", "--table", "--no-models").stdout
    assert "missing batches of group 1: 0 (run `tasador recover --group 1`)" in table

    recovered = tasador(cli_env, "recover", "--group", "1")
    assert recovered.returncode == 0, recovered.stderr
    assert "batch 0 -> RAW batch id 2" in recovered.stdout and "cleaned:" in recovered.stdout
    report = json.loads(tasador(cli_env, "status", "--no-models").stdout)
    assert report["gaps"] == []
    assert sorted(b["batch_number"] for b in report["batches"]) == [0, 1]  # no hole, no repeat
    assert all(b["rows_clean"] > 0 for b in report["batches"])
    again = tasador(cli_env, "recover", "--group", "1")
    assert again.returncode == 0 and "no skipped batches" in again.stdout


def test_collect_against_a_dead_api_is_a_clear_error(settings):

    env = {
        **os.environ,
        **settings_env(settings),
        "TASADOR_DATA_API_URL": "http://127.0.0.1:9",
        "TASADOR_API_MAX_RETRIES": "1",
        "TASADOR_API_BACKOFF_S": "0",
    }
    result = tasador(env, "collect")
    assert result.returncode == ServiceUnavailable.exit_code
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_invalid_settings_are_refused_with_the_variable_named(settings):

    env = {**os.environ, **settings_env(settings), "TASADOR_GROUP_NUMBER": "11"}
    result = tasador(env, "status")
    assert result.returncode != 0
    assert "group_number" in (result.stderr + result.stdout)


def test_serve_refuses_a_range_coverage_it_has_no_ranges_for(settings):
    env = {**os.environ, **settings_env(settings), "TASADOR_SERVING_RANGE_COVERAGE": "0.83"}
    result = tasador(env, "serve")
    assert result.returncode != 0
    said = result.stderr + result.stdout
    assert "TASADOR_SERVING_RANGE_COVERAGE=0.83" in said and "0.80" in said
    assert "Traceback" not in said


def test_db_upgrade_reports_each_database_and_can_be_repeated(settings):
    env = {**os.environ, **settings_env(settings)}
    for _ in range(2):
        result = tasador(env, "db", "upgrade")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["raw: at revision 0005", "clean: at revision 0005"]


# What one command needs must not slow down every other: MLflow, scikit-learn and the training
# code (imported by decide, lineage, rollback, search) cost the CLI's start-up ~15 s under load.
HEAVY_FOR_EVERY_COMMAND = (
    "airflow", "experiments", "mlflow", "numpy", "optuna", "pandas", "scipy", "serving", "shap",
    "sklearn", "streamlit",
)  # fmt: skip


def test_the_cli_imports_each_command_s_heavy_modules_only_when_it_runs() -> None:
    probe = "import json, sys, tasador.cli; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = {name.partition(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}
    assert "typer" in loaded  # it did import the CLI
    assert not loaded & set(HEAVY_FOR_EVERY_COMMAND), sorted(loaded & set(HEAVY_FOR_EVERY_COMMAND))
