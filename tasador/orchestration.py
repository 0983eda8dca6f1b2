"""What the Airflow DAGs share: the retrain Asset, task defaults, and running DAGs locally.

The DAG files in ``dags/`` stay thin; everything they call is importable and tested here or in the
capability modules (``tasador.ingest``, ``tasador.decide``, ``experiments``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from tasador.config import Settings, settings_env

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "dags"

# The ingestion DAG updates this Asset when a batch calls for retraining; the training DAG is
# scheduled on it (data-aware scheduling). The event's extra carries the decision id.
RETRAIN_ASSET_URI = "tasador://retrain-requests"

DEFAULT_ARGS = {
    "owner": "tasador",
    "retries": 2,
    "retry_delay": timedelta(seconds=10),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
    "execution_timeout": timedelta(minutes=30),
}


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
