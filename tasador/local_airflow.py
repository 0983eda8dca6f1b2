"""Running the DAGs on this machine: a local Airflow home (SQLite metadata) and `airflow dags
test`, no scheduler needed. Used by the demo and the DAG tests.

Airflow is used through its command line only, never its tables: the run's state comes from
`airflow dags list-runs -o json`, the tasks' states from `airflow tasks states-for-dag-run -o json`,
and the return values of the unmapped tasks from what `airflow dags test` prints for each task
("Done. Returned value was: ..."; the CLI has no XCom command and no API server runs here).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasador.core.config import Settings, settings_env
from tasador.core.errors import TasadorError
from tasador.loop.dag_defaults import SEARCH_POOL

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
    env = airflow_env(settings, home)
    airflow(settings, "db", "migrate", env=env)
    slots = str(settings.search_workers)
    airflow(settings, "pools", "set", SEARCH_POOL, slots, "Optuna search workers", env=env)


def run_dag(
    settings: Settings, dag_id: str, conf: dict[str, Any] | None = None, home: Path | None = None
) -> DagRun:
    """Run a whole DAG through Airflow itself (`airflow dags test`), no scheduler needed."""
    env = airflow_env(settings, home)
    args = ["dags", "test", dag_id, *(["-c", json.dumps(conf)] if conf else [])]
    result = airflow(settings, *args, env=env, check=False)
    run = latest_run(settings, dag_id, env, returns=printed_returns(result.stdout + result.stderr))
    if result.returncode != 0 or run is None or run.state != "success":
        output = (result.stdout + result.stderr)[-4000:]
        state = run.state if run else "not started"
        raise DagRunError(f"{dag_id} ended {state} (exit {result.returncode}):\n{output}")
    return run


def _json_output(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON document of a CLI command's `-o json` output (warnings may precede it)."""
    lines = [line for line in result.stdout.splitlines() if line.startswith(("[", "{"))]
    return json.loads(lines[-1]) if lines else []


def latest_run(
    settings: Settings, dag_id: str, env: dict[str, str], returns: dict[str, Any] | None = None
) -> DagRun | None:
    """The newest run of a DAG, as the Airflow CLI reports it."""
    runs = _json_output(airflow(settings, "dags", "list-runs", dag_id, "-o", "json", env=env))
    if not runs:
        return None
    newest = max(runs, key=lambda r: r["run_after"])
    tasks = _json_output(
        airflow(
            settings, "tasks", "states-for-dag-run", dag_id, newest["run_id"], "-o", "json", env=env
        )
    )
    # The CLI leaves map_index out when no task of the run is mapped.
    ordered = sorted(tasks, key=lambda t: int(t.get("map_index") or -1))
    states = {t["task_id"]: t["state"] for t in ordered}
    return DagRun(
        dag_id=dag_id,
        run_id=newest["run_id"],
        state=newest["state"],
        task_states=states,
        returns=returns or {},
    )


_STARTING = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
_RETURNED = re.compile(r"Done\. Returned value was: (.*?)\s+\[airflow\.task\.")


def printed_returns(output: str) -> dict[str, Any]:
    """The return values `airflow dags test` printed for the unmapped tasks, by task id."""
    returns: dict[str, Any] = {}
    task: str | None = None
    for line in output.splitlines():
        if started := _STARTING.search(line):
            task = started[1] if started[2] == "-1" else None
        elif task and (returned := _RETURNED.search(line)):
            try:
                returns[task] = ast.literal_eval(returned[1])
            except (ValueError, SyntaxError):
                returns[task] = returned[1]
    return returns
