from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tasador import orchestration
from tasador.config import Settings


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated Airflow metadata DB (SQLite) for the session."""
    home = tmp_path_factory.mktemp("airflow")
    settings = Settings(state_dir=home / "state", _env_file=None)
    orchestration.airflow(settings, "db", "migrate", env=orchestration.airflow_env(settings, home))
    return home


@pytest.fixture
def run_dag(airflow_home: Path) -> Iterator:
    def run(settings: Settings, dag_id: str, conf: dict | None = None):
        import json

        args = ["dags", "test", dag_id]
        if conf:
            args += ["-c", json.dumps(conf)]
        env = orchestration.airflow_env(settings, airflow_home)
        result = orchestration.airflow(settings, *args, env=env, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout + result.stderr

    yield run
