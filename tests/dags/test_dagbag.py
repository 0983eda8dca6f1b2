"""Every DAG imports cleanly, and every task retries."""

import json
import subprocess
import sys

from tasador import local_airflow
from tasador.core.config import Settings

PROBE = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag()
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {t.task_id: t.retries for t in d.tasks} for d in bag.dags.values()},
}))
"""


def test_dags_import_without_errors_and_tasks_retry(airflow_home, tmp_path):
    settings = Settings(state_dir=tmp_path, _env_file=None)
    env = local_airflow.airflow_env(settings, airflow_home)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    bag = json.loads(out.strip().splitlines()[-1])
    assert bag["errors"] == {}
    assert "tasador_ingestion" in bag["dags"]
    for dag_id, tasks in bag["dags"].items():
        assert tasks, dag_id
        for task_id, retries in tasks.items():
            assert retries >= 1, f"{dag_id}.{task_id} has no retries"
