"""`tasador demo` stopped by SIGTERM leaves nothing running (the data API, Airflow's api-server,
`airflow dags test` and its executor's workers), as its normal end does."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest
from pydantic import SecretStr

from tasador.core import services
from tasador.core.config import Settings, settings_env

pytestmark = pytest.mark.airflow  # the demo runs its DAGs through Airflow

START_S = 900.0  # to the first DAG run: minutes on a busy 2-core machine


def descendants(pid: int, seen: dict[int, float]) -> None:
    """Add the processes below ``pid`` to ``seen`` (pid -> start time), the embedded PostgreSQL
    excepted: it outlives every command by design. (Airflow's processes retitle themselves, which
    hides their environment, so they are found by ancestry, not by a variable they inherit.)"""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for child in children:
        try:
            if child.name() != "postgres":
                seen[child.pid] = child.create_time()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass


def still_running(seen: dict[int, float]) -> list[str]:
    left = []
    for pid, started in seen.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid}: {' '.join(process.cmdline())}")
        except psutil.NoSuchProcess:
            pass
    return left


def test_sigterm_ends_the_demo_and_everything_it_started(
    settings: Settings, make_database, mlflow_server
):
    given = settings.updated(
        optuna_storage_url=SecretStr(make_database("optuna")), mlflow_tracking_uri=mlflow_server
    )
    demo = subprocess.Popen(
        services.tasador_command("demo", "--scale", "0.005", "--trials", "2"),
        env={**os.environ, **settings_env(given)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seen: dict[int, float] = {}
    try:
        deadline = time.monotonic() + START_S
        while demo.poll() is None and time.monotonic() < deadline:
            descendants(demo.pid, seen)
            if any("dags test" in line for line in still_running(seen)):
                time.sleep(5)  # the executor's workers start
                descendants(demo.pid, seen)
                break
            time.sleep(0.5)
        assert demo.poll() is None, demo.communicate()[0].decode()[-2000:]
        assert any("dags test" in line for line in still_running(seen)), "no DAG run started"
        assert any("api_server" in line for line in still_running(seen))
        assert any("datasource" in line for line in still_running(seen))
    finally:
        demo.send_signal(signal.SIGTERM)  # pass or fail: the demo cleans up after itself
        output = demo.communicate(timeout=120)[0].decode()
    assert demo.returncode == 128 + signal.SIGTERM, output[-2000:]
    deadline = time.monotonic() + 10
    while still_running(seen) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert still_running(seen) == []
