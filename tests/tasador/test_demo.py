"""`tasador demo` stopped by SIGTERM leaves nothing running (the data API, Airflow's api-server,
`airflow dags test` and its executor's workers), as its normal end does."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import psutil
from pydantic import SecretStr

from tasador.core import services
from tasador.core.config import Settings, settings_env

MARK = "TASADOR_TEST_DEMO"  # every process the demo starts inherits it


def marked(token: str) -> list[psutil.Process]:
    """The demo's processes, but the embedded PostgreSQL (it outlives every command by design)."""
    found = []
    for process in psutil.process_iter(["name"]):
        try:
            if process.info["name"] != "postgres" and process.environ().get(MARK) == token:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def running_executor(token: str) -> bool:
    return any("LocalExecutor" in " ".join(p.cmdline()) for p in marked(token))


def test_sigterm_ends_the_demo_and_everything_it_started(
    settings: Settings, make_database, mlflow_server
):
    token = uuid.uuid4().hex
    given = settings.model_copy(
        update={
            "optuna_storage_url": SecretStr(make_database("optuna")),
            "mlflow_tracking_uri": mlflow_server,
        }
    )
    env = {**os.environ, **settings_env(given), MARK: token}
    demo = subprocess.Popen(
        services.tasador_command("demo", "--scale", "0.005", "--trials", "2"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 400
        while not running_executor(token) and demo.poll() is None:
            assert time.monotonic() < deadline, "no DAG run started"
            time.sleep(1)
        assert demo.poll() is None, demo.communicate()[0].decode()[-2000:]
        started = {p.pid for p in marked(token)}
        assert len(started) >= 4  # the demo, the data API, the api-server, `dags test` and more

        demo.send_signal(signal.SIGTERM)
        output = demo.communicate(timeout=120)[0].decode()
        assert demo.returncode == 128 + signal.SIGTERM, output[-2000:]
        left = marked(token)
        assert left == [], [" ".join(p.cmdline()) for p in left]
    finally:
        if demo.poll() is None:
            demo.kill()
        for process in marked(token):  # a failed test still stops what the demo left
            process.kill()
