"""Every DAG imports cleanly, and every task retries."""

import json
import subprocess
import sys

from tasador import local_airflow
from tasador.core.config import Settings
from tasador.loop import dag_defaults

PROBE = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag()
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {t.task_id: t.retries for t in d.tasks} for d in bag.dags.values()},
    "tasks": {
        f"{d.dag_id}.{t.task_id}": {
            "pool": t.pool, "queue": t.queue, "trigger_rule": str(t.trigger_rule),
            "map_index_template": t.map_index_template,
            "backoff": t.retry_exponential_backoff,
        }
        for d in bag.dags.values() for t in d.tasks
    },
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
    assert {"tasador_ingestion", "tasador_monitoring"} <= set(bag["dags"])
    assert list(bag["dags"]["tasador_reproduce"]) == ["reproduce"]
    for dag_id, tasks in bag["dags"].items():
        assert tasks, dag_id
        for task_id, retries in tasks.items():
            assert retries >= 1, f"{dag_id}.{task_id} has no retries"


def test_search_workers_have_their_pool_queue_label_and_a_lenient_successor(airflow_home, tmp_path):
    settings = Settings(state_dir=tmp_path, _env_file=None)
    env = local_airflow.airflow_env(settings, airflow_home)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    tasks = json.loads(out.strip().splitlines()[-1])["tasks"]
    search = tasks["tasador_training.search"]
    assert search["pool"] == dag_defaults.SEARCH_POOL
    assert search["queue"] == dag_defaults.SEARCH_QUEUE
    assert "worker" in search["map_index_template"]
    # Once every worker is done, if at least one succeeded.
    rule = tasks["tasador_training.champion_challenger"]["trigger_rule"]
    assert "all_done_min_one_success" in rule.lower()
    for name, task in tasks.items():
        assert task["backoff"] > 1.0, f"{name}: a backoff multiplier of 1 is a constant delay"
        if not name.endswith(".search"):
            assert task["pool"] == "default_pool", name
