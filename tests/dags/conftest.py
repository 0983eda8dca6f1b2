from __future__ import annotations

from pathlib import Path

import pytest

from tasador import local_airflow
from tasador.core.config import Settings
from tests.experiments.conftest import search_settings  # noqa: F401  (a fixture)


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated Airflow metadata DB (SQLite) for the session."""
    home = tmp_path_factory.mktemp("airflow")
    local_airflow.migrate(Settings(state_dir=home / "state", _env_file=None), home)
    return home


@pytest.fixture
def run_dag(airflow_home: Path):
    def run(settings: Settings, dag_id: str, conf: dict | None = None) -> local_airflow.DagRun:
        return local_airflow.run_dag(settings, dag_id, conf, home=airflow_home)

    return run
