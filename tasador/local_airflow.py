"""Running the DAGs on this machine: a local Airflow home (SQLite metadata) and `airflow dags
test`, no scheduler needed. Used by the demo and the DAG tests."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasador.core.config import Settings, settings_env
from tasador.core.errors import TasadorError

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "dags"


def airflow_env(settings: Settings, home: Path | None = None) -> dict[str, str]:
    """Environment for a local Airflow: SQLite metadata in ``home`` (default: under the state
    folder), our DAGs, and the settings passed on as TASADOR_* variables."""
    home = (home or settings.state_dir / "airflow").resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    env.update(settings_env(settings))
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS_FOLDER),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
    )
    return env


def airflow(
    settings: Settings, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the `airflow` CLI of this environment against the local Airflow home."""
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    return subprocess.run(
        command, env=env or airflow_env(settings), text=True, capture_output=True, check=check
    )


class DagRunError(TasadorError):
    """A DAG run did not succeed; the message ends with the tail of Airflow's output."""


@dataclass(frozen=True)
class DagRun:
    """A finished DAG run: its state, each task's state and the unmapped tasks' return values."""

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str]  # task id -> state (mapped tasks: the last instance's)
    returns: dict[str, Any]  # task id -> return value (unmapped tasks)


def migrate(settings: Settings, home: Path | None = None) -> None:
    """Create or upgrade the local Airflow metadata DB (a no-op when it is current)."""
    airflow(settings, "db", "migrate", env=airflow_env(settings, home))


def run_dag(
    settings: Settings, dag_id: str, conf: dict[str, Any] | None = None, home: Path | None = None
) -> DagRun:
    """Run a whole DAG through Airflow itself (`airflow dags test`), no scheduler needed."""
    env = airflow_env(settings, home)
    args = ["dags", "test", dag_id, *(["-c", json.dumps(conf)] if conf else [])]
    result = airflow(settings, *args, env=env, check=False)
    run = latest_run(Path(env["AIRFLOW_HOME"]) / "airflow.db", dag_id)
    if result.returncode != 0 or run is None or run.state != "success":
        output = (result.stdout + result.stderr)[-4000:]
        state = run.state if run else "not started"
        raise DagRunError(f"{dag_id} ended {state} (exit {result.returncode}):\n{output}")
    return run


def latest_run(metadata_db: Path, dag_id: str) -> DagRun | None:
    """The newest run of a DAG in a local (SQLite) Airflow metadata DB."""
    with sqlite3.connect(metadata_db) as conn:
        row = conn.execute(
            "SELECT id, run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
            (dag_id,),
        ).fetchone()
        if row is None:
            return None
        run_pk, run_id, state = row
        states = dict(
            conn.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ? "
                "ORDER BY map_index",
                (dag_id, run_id),
            )
        )
        returns = {
            task_id: json.loads(value) if isinstance(value, str | bytes) else value
            for task_id, value in conn.execute(
                "SELECT task_id, value FROM xcom WHERE dag_run_id = ? AND key = 'return_value' "
                "AND map_index = -1",
                (run_pk,),
            )
        }
    return DagRun(dag_id=dag_id, run_id=run_id, state=state, task_states=states, returns=returns)
