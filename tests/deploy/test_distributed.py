"""The stack's distributed path, run here: docker/distributed_check.py against the Airflow
components started as processes with the settings docker-compose.yml gives them.

CeleryExecutor, metadata on the test PostgreSQL, Debian's redis-server as the Valkey broker, the
api-server, scheduler, dag-processor, triggerer and two Celery workers: one serving the
``default`` queue, one the ``search`` queue (the separate search fleet of docs/scale-out.md).
The check kills the search worker's process group mid-study and this test restarts it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from pathlib import Path

import psutil
import psycopg
import pytest

from tasador.core.config import Settings
from tasador.core.services import free_port
from tests.helpers.data_api import drift_zoo_api
from tests.helpers.docker_scripts import DISTRIBUTED_CHECK
from tests.helpers.dockerfile import final_stage
from tests.helpers.local_run import Localizer, localize_args, started, wait_healthy
from tests.helpers.local_stack import ENV, SERVICES, airflow_component, environment, serving

# Two loops, a dead worker's heartbeat timeout and the retry: minutes on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.server, pytest.mark.timeout(1800)]

TRIALS = 8
# Tiny data and budgets, so the two loops take minutes: what tests/dags/test_loop.py uses.
BUDGETS = {
    "TASADOR_SEARCH_TRIALS": str(TRIALS),
    "TASADOR_SEARCH_WORKERS": "2",
    "TASADOR_SEARCH_SAMPLE_ROWS": "600",
    "TASADOR_SEARCH_CV_FOLDS": "2",
    "TASADOR_SHAP_SAMPLE_ROWS": "40",
}
# Generous: two cores are shared with other test runs.
WAIT_S = 900.0
HEALTHY_S = 300.0


class Workers:
    """The two Celery workers, one per queue, each its own process group; the search worker
    can be killed with SIGKILL and started again."""

    def __init__(self, stack: ExitStack, localizer: Localizer, tmp_path: Path, extra: dict):
        self.stack, self.localizer, self.tmp_path, self.extra = stack, localizer, tmp_path, extra
        self.processes: dict[str, subprocess.Popen] = {}
        self.starts = 0

    def start(self, queue: str) -> None:
        args, probe, env = airflow_component(
            "airflow-worker", self.localizer, self.tmp_path, self.extra
        )
        queues = args.index("--queues") + 1
        assert args[queues] == "default,search", args  # compose's one worker takes both
        name = f"{queue}-worker"
        # One queue each, and a node name each: in compose each container has its own host.
        args = [*args[:queues], queue, *args[queues + 1 :], "--celery-hostname", f"celery@{name}"]
        env["HOSTNAME"] = name  # the healthcheck pings celery@$HOSTNAME
        self.starts += 1
        log = self.tmp_path / f"airflow-worker-{queue}-{self.starts}.log"
        process = self.stack.enter_context(started(args, env, cwd=self.tmp_path, log=log))
        self.processes[queue] = process
        wait_healthy(process, probe, env, log, timeout_s=HEALTHY_S)

    def kill_search(self) -> None:
        process = self.processes["search"]
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
        os.killpg(process.pid, signal.SIGKILL)
        for child in tree:  # a task's children in a session of their own die too
            with suppress(psutil.NoSuchProcess):
                child.kill()
        process.wait(30)
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert not alive, f"still running after SIGKILL: {alive}"

    def restart_search(self) -> None:
        self.start("search")


def _sql(url: str) -> Callable[[str], int]:
    def run(sql: str) -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute(sql).fetchone()
            assert row is not None
            return int(row[0])

    return run


@pytest.fixture
def data_api(localizer: Localizer, tmp_path: Path) -> Iterator[None]:
    """The drift-zoo data API in place of the datasource service."""
    port = free_port()
    settings = Settings(
        state_dir=tmp_path / "data-api", data_api_url=f"http://127.0.0.1:{port}", _env_file=None
    )
    with drift_zoo_api(settings):
        localizer.http["datasource:8001"] = f"127.0.0.1:{port}"
        yield


def test_the_loop_runs_on_celery_workers_and_survives_the_search_worker_killed_mid_study(
    localizer: Localizer, redis_server: str, mlflow_server: str, data_api: None, tmp_path: Path
) -> None:
    began = time.monotonic()
    localizer.http["valkey:6379"] = redis_server
    localizer.http["mlflow:5000"] = mlflow_server.split("://", 1)[1]
    name = f"realtor-dist-{uuid.uuid4().hex[:6]}"
    extra = {"TASADOR_MODEL_NAME": name, "TASADOR_EXPERIMENT_NAME": name, **BUDGETS}
    init_env = environment("airflow", "airflow-init", localizer, tmp_path) | extra
    done = subprocess.run(
        localize_args(SERVICES["airflow-init"]["command"], final_stage("airflow"), localizer),
        env=init_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with serving("airflow", localizer, tmp_path, extra) as url, ExitStack() as stack:
        localizer.http["airflow-api-server:8080"] = url.split("://", 1)[1]
        components = []
        for component in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
            args, probe, env = airflow_component(component, localizer, tmp_path, extra)
            log = tmp_path / f"{component}.log"
            process = stack.enter_context(started(args, env, cwd=tmp_path, log=log))
            components.append((process, probe, env, log))
        for process, probe, env, log in components:
            wait_healthy(process, probe, env, log, timeout_s=HEALTHY_S)
        workers = Workers(stack, localizer, tmp_path, extra)
        workers.start("default")
        workers.start("search")

        loops = DISTRIBUTED_CHECK.check(
            DISTRIBUTED_CHECK.Stack(
                airflow_url=url,
                airflow_login=(ENV["AIRFLOW_ADMIN_USER"], ENV["AIRFLOW_ADMIN_PASSWORD"]),
                mlflow_url=mlflow_server,
                mlflow_login=None,  # the test server has no login
                model_name=name,
                trials=TRIALS,
                clean_sql=_sql(localizer.postgres("postgres-clean", "clean")),
                optuna_sql=_sql(localizer.postgres("postgres-optuna", "optuna")),
                kill_search_worker=workers.kill_search,
                restart_search_worker=workers.restart_search,
                timeout_s=WAIT_S,
            )
        )
    assert workers.starts == 3  # default, search, search again after the kill
    assert [str(loop.result["version"]) for loop in loops] == ["1", "2"]
    print(f"distributed path with a killed search worker: {time.monotonic() - began:.0f}s")
