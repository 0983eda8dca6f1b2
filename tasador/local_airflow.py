"""Running the DAGs on this machine, the way a deployment runs them: a local Airflow whose
LocalExecutor runs the task instances that are ready at once (the mapped search workers of the
training DAG run in parallel), no scheduler needed. Used by the demo and the DAG tests.

:func:`running` migrates Airflow's metadata DB (PostgreSQL: the LocalExecutor's task processes
and the api-server write it concurrently) and starts an `airflow api-server` for the block: its
Execution API is what the executor's task processes talk to, its public REST API is how the
run's state, its tasks' states and their return values (XCom) are read afterwards.
:meth:`LocalAirflow.run_dag` runs one DAG run with `airflow dags test --use-executor`.
Airflow is used through its command line and REST API only, never its tables.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tasador import startup
from tasador.core import db, services
from tasador.core.config import Settings, settings_env
from tasador.core.errors import TasadorError
from tasador.loop.dag_defaults import SEARCH_POOL

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "dags"
METADATA_DATABASE = "tasador_airflow"  # on the embedded PostgreSQL, beside the project's own
API_START_TIMEOUT_S = 180.0  # its first start on a busy machine takes a minute
API_TIMEOUT_S = 30.0
OUTPUT_TAIL = 4000  # characters of a failed run's output quoted in the error


def airflow_env(settings: Settings, home: Path | None = None) -> dict[str, str]:
    """Environment of a local Airflow command that needs no metadata DB (parsing the DAGs): the
    home (default: under the state folder), our DAGs, and the settings as TASADOR_* variables."""
    home = (home or settings.state_dir / "airflow").resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    env.update(settings_env(settings))
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS_FOLDER),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
    )
    return env


def airflow_command(*args: str) -> list[str]:
    """The `airflow` CLI of this environment."""
    return [str(Path(sys.executable).with_name("airflow")), *args]


class DagRunError(TasadorError):
    """A DAG run did not succeed; the message ends with the tail of Airflow's output."""


@dataclass(frozen=True)
class DagRun:
    """A finished DAG run: its state, each task's state and the unmapped tasks' return values."""

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str]  # task id -> state (mapped tasks: the last instance's)
    returns: dict[str, Any]  # task id -> return value (unmapped tasks that succeeded)


@dataclass(frozen=True)
class LocalAirflow:
    """A local Airflow: its home, metadata DB and api-server port (see :func:`running`)."""

    home: Path
    db_url: str  # plain postgresql:// URL of the metadata DB
    port: int
    # Signs the tokens the executor gives task processes; the api-server checks them.
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, settings: Settings) -> dict[str, str]:
        """Environment of every Airflow command of this local Airflow (secrets stay out of argv)."""
        url = db.sqlalchemy_url(self.db_url)  # psycopg 3: sync and async (no asyncpg here)
        env = airflow_env(settings, self.home)
        env.update(
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=url,
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=url,
            # The search workers at once, plus one task beside them; no more on two cores.
            AIRFLOW__CORE__PARALLELISM=str(settings.search.search_workers + 1),
            AIRFLOW__API__BASE_URL=self.api_url,
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.api_url}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET=self.jwt_secret,
            # The REST API without a login: it listens on 127.0.0.1 only, for this process.
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        )
        return env

    def migrate(self, settings: Settings) -> None:
        """Create or upgrade the metadata DB (a no-op when it is current); size the search pool."""
        env = self.env(settings)
        subprocess.run(airflow_command("db", "migrate"), env=env, capture_output=True, check=True)
        pool = [
            "pools",
            "set",
            SEARCH_POOL,
            str(settings.search.search_workers),
            "Optuna search workers",
        ]
        subprocess.run(airflow_command(*pool), env=env, capture_output=True, check=True)

    def run_dag(
        self, settings: Settings, dag_id: str, conf: dict[str, Any] | None = None
    ) -> DagRun:
        """Run a whole DAG through Airflow itself (`airflow dags test --use-executor`): the
        LocalExecutor runs every ready task instance at once, up to its parallelism."""
        args = [
            "dags",
            "test",
            dag_id,
            "--use-executor",
            *(["-c", json.dumps(conf)] if conf else []),
        ]
        log = self.home / "runs" / f"{dag_id}.log"  # the newest run's output, every task's log
        log.parent.mkdir(parents=True, exist_ok=True)
        started = datetime.now(UTC)
        with log.open("wb") as output:
            code = services.run_in_own_group(airflow_command(*args), self.env(settings), output)
        run = self.newest_run(dag_id, since=started)
        if code != 0 or run is None or run.state != "success":
            state = run.state if run else "not started"
            raise DagRunError(f"{dag_id} ended {state} (exit {code}):\n{_tail(log)}")
        return run

    def get(self, path: str, **params: Any) -> Any:
        """GET `/api/v2/<path>` of the REST API; the JSON answer."""
        response = httpx.get(f"{self.api_url}/api/v2/{path}", params=params, timeout=API_TIMEOUT_S)
        response.raise_for_status()
        return response.json()

    def newest_run(self, dag_id: str, since: datetime | None = None) -> DagRun | None:
        """The newest run of a DAG (after ``since``), as Airflow's REST API reports it."""
        filters = {"run_after_gte": since.isoformat()} if since else {}
        found = self.get(f"dags/{dag_id}/dagRuns", order_by="-run_after", limit=1, **filters)
        if not found["dag_runs"]:
            return None
        run = found["dag_runs"][0]
        path = f"dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances"
        tasks = sorted(self.get(path, limit=1000)["task_instances"], key=lambda t: t["map_index"])
        returns = {
            t["task_id"]: self._return_value(f"{path}/{t['task_id']}")
            for t in tasks
            if t["map_index"] == -1 and t["state"] == "success"
        }
        return DagRun(
            dag_id=dag_id,
            run_id=run["dag_run_id"],
            state=run["state"],
            task_states={t["task_id"]: t["state"] for t in tasks},
            returns=returns,
        )

    def _return_value(self, task_path: str) -> Any:
        try:
            return self.get(f"{task_path}/xcomEntries/return_value")["value"]
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return None  # the task returned None: Airflow stores no XCom for it
            raise


def metadata_url(settings: Settings) -> str:
    """The metadata DB of local runs: a database on the embedded PostgreSQL (started if needed)."""
    return startup.database_url(settings.pg_dir, METADATA_DATABASE)


@contextmanager
def running(
    settings: Settings, home: Path | None = None, db_url: str | None = None
) -> Iterator[LocalAirflow]:
    """A local Airflow for the block: metadata DB ``db_url`` (default: :func:`metadata_url`)
    migrated, an api-server on a free port; the server and its processes are stopped after,
    however the block ends."""
    local = LocalAirflow(
        home=(home or settings.state_dir / "airflow").resolve(),
        db_url=db_url or metadata_url(settings),
        port=services.free_port(),
    )
    local.migrate(settings)
    command = airflow_command(
        "api-server", "--host", "127.0.0.1", "--port", str(local.port), "--workers", "1"
    )
    log = local.home / "logs" / "api-server.log"
    with services.running(
        command,
        f"{local.api_url}/api/v2/monitor/health",
        log,
        timeout_s=API_START_TIMEOUT_S,
        env=local.env(settings),
        own_group=True,
    ):
        yield local


def _tail(log: Path) -> str:
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - OUTPUT_TAIL))
        return handle.read().decode(errors="replace")
