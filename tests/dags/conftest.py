from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasador import local_airflow
from tasador.core.config import Settings


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Airflow home of the session (configuration, logs)."""
    return tmp_path_factory.mktemp("airflow")


@pytest.fixture(scope="session")
def local_airflow_server(
    airflow_home: Path, make_database: Callable[[str], str]
) -> Iterator[local_airflow.LocalAirflow]:
    """One local Airflow for the session: a migrated metadata DB on the test PostgreSQL and an
    api-server (the DAG runs' settings reach their tasks through `airflow dags test`)."""
    settings = Settings(state_dir=airflow_home / "state", _env_file=None)
    with local_airflow.running(settings, airflow_home, make_database("airflow")) as airflow:
        yield airflow


@pytest.fixture
def run_dag(local_airflow_server: local_airflow.LocalAirflow):
    def run(settings: Settings, dag_id: str, conf: dict | None = None) -> local_airflow.DagRun:
        return local_airflow_server.run_dag(settings, dag_id, conf)

    return run
