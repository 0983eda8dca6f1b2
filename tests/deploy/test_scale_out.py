"""docs/scale-out.md's files: the values of the Airflow chart (the search fleet a Celery worker set
of it, scaled by KEDA) and of MLflow's chart, checked as far as a machine without the charts'
repositories allows; the image workflow renders them with the charts themselves."""

from __future__ import annotations

import re
from typing import Any

import mlflow.cli
import pytest
import yaml

from tasador.loop.dag_defaults import SEARCH_QUEUE
from tests.helpers import compose
from tests.helpers.dockerfile import REPO
from tests.helpers.helm_charts import (
    AIRFLOW_KEYS,
    AIRFLOW_OPAQUE,
    HELM_DIR,
    MLFLOW_KEYS,
    MLFLOW_OPAQUE,
    undocumented,
)
from tests.helpers.workflows import steps

AIRFLOW = yaml.safe_load((HELM_DIR / "airflow-values.yaml").read_text())
MLFLOW = yaml.safe_load((HELM_DIR / "mlflow-values.yaml").read_text())
RELEASE = compose.env_file()["TAG"]
DEFAULT_QUEUE = "default"  # Airflow's [operators] default_queue: every task but the search


def _search_set() -> dict[str, Any]:
    (found,) = [s for s in AIRFLOW["workers"]["celery"]["sets"] if s["queue"] == SEARCH_QUEUE]
    return found


def _env(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in entries}


def test_the_airflow_chart_runs_the_released_image_with_celery_and_managed_services() -> None:
    assert AIRFLOW["defaultAirflowRepository"].endswith("/tasador-airflow")
    assert AIRFLOW["defaultAirflowTag"] == RELEASE
    assert AIRFLOW["executor"] == "CeleryExecutor"
    assert AIRFLOW["postgresql"]["enabled"] is False
    assert AIRFLOW["redis"]["enabled"] is False
    assert AIRFLOW["dags"]["gitSync"]["enabled"] is False  # the DAGs are in the image


def test_the_search_fleet_is_a_worker_set_scaled_by_keda_on_its_own_queue() -> None:
    celery = AIRFLOW["workers"]["celery"]
    assert celery["enableDefault"] is True and celery["queue"] == DEFAULT_QUEUE
    fleet = _search_set()
    keda = fleet["keda"]
    assert keda["enabled"] is True and keda["minReplicaCount"] == 0
    # The chart's default query counts the tasks of every queue: the set's own counts its queue
    # alone, per pod as many tasks as the workers' concurrency.
    query = " ".join(keda["query"].split())
    assert f"queue = '{SEARCH_QUEUE}'" in query
    concurrency = AIRFLOW["config"]["celery"]["worker_concurrency"]
    assert f"COUNT(*)::decimal / {concurrency})" in query
    assert "state = 'running' OR state = 'queued'" in query


def test_the_search_settings_match_the_fleet() -> None:
    env = _env(AIRFLOW["env"])
    slots = (
        _search_set()["keda"]["maxReplicaCount"] * AIRFLOW["config"]["celery"]["worker_concurrency"]
    )
    assert int(env["TASADOR_SEARCH_WORKERS"]["value"]) <= slots
    assert env["TASADOR_SEARCH_THREADS"]["value"] == "1"  # one fit per task process


def test_the_hand_written_fleet_is_gone() -> None:
    assert not (HELM_DIR / "search-workers.yaml").exists()
    assert sorted(p.name for p in HELM_DIR.glob("*.yaml")) == [
        "airflow-values.yaml",
        "mlflow-values.yaml",
    ]


@pytest.mark.parametrize(
    ("values", "keys", "opaque"),
    [(AIRFLOW, AIRFLOW_KEYS, AIRFLOW_OPAQUE), (MLFLOW, MLFLOW_KEYS, MLFLOW_OPAQUE)],
    ids=["airflow", "mlflow"],
)
def test_every_key_is_one_the_chart_documents(
    values: dict[str, Any], keys: frozenset[str], opaque: frozenset[str]
) -> None:
    assert undocumented(values, keys, opaque) == set()


def test_the_key_check_finds_a_misspelled_key() -> None:
    wrong = {
        **AIRFLOW,
        "workers": {"celery": {"sets": [{"name": "search", "keda": {"enable": 1}}]}},
    }
    assert undocumented(wrong, AIRFLOW_KEYS, AIRFLOW_OPAQUE) == {
        "workers.celery.sets[].keda.enable"
    }


def test_the_mlflow_chart_runs_the_released_image_with_the_options_mlflow_has() -> None:
    assert MLFLOW["image"]["repository"].endswith("/tasador-mlflow")
    assert MLFLOW["image"]["tag"] == RELEASE
    options = {p.name for p in mlflow.cli.server.params}
    server = MLFLOW["server"]
    assert set(server["value_options"]) <= options
    assert {f.replace("-", "_") for f in server["flag_options"]} <= options
    assert server["value_options"]["app_name"] == "basic-auth"  # as compose runs it
    # The Service the Airflow tasks name.
    host = _env(AIRFLOW["env"])["TASADOR_MLFLOW_TRACKING_URI"]["value"]
    assert host.startswith(f"http://{MLFLOW['fullnameOverride']}.")
    assert host.endswith(f":{server['value_options']['port']}")


def test_mlflow_reads_its_auth_file_from_the_mounted_secret() -> None:
    env = _env(MLFLOW["env"])
    path = env["MLFLOW_AUTH_CONFIG_PATH"]["value"]
    (mount,) = MLFLOW["extraVolumeMounts"]
    (volume,) = MLFLOW["extraVolumes"]
    assert mount["name"] == volume["name"] and path.startswith(mount["mountPath"] + "/")
    assert [i["path"] for i in volume["secret"]["items"]] == [path.rsplit("/", 1)[1]]


def test_no_secret_value_is_in_either_file() -> None:
    assert "secretKeyRef" in MLFLOW["mlflow"]["backendStoreUriFrom"]
    for name, entry in _env(MLFLOW["env"]).items():
        if re.search(r"PASSWORD|SECRET|KEY", name):
            assert "secretKeyRef" in entry["valueFrom"], name
    for name in ("metadataSecretName", "brokerUrlSecretName"):
        assert AIRFLOW["data"][name]
    for path in HELM_DIR.glob("*.yaml"):
        text = path.read_text()
        assert "change-me" not in text, path
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), f"{path}: credentials in a URL"


def test_the_image_workflow_renders_both_files_with_their_charts() -> None:
    runs = "\n".join(step.get("run", "") for step in steps("images.yml", "charts"))
    for values in ("airflow-values.yaml", "mlflow-values.yaml"):
        assert (
            f'helm lint "${{RUNNER_TEMP}}/charts/{values.split("-")[0]}" -f docker/helm/{values}'
            in runs
        )
        assert f"-f docker/helm/{values} \\\n" in runs
    assert runs.count("| kubeconform -strict") == 2
    assert "oci://ghcr.io/mlflow/charts/mlflow" in runs


def test_the_scale_out_page_names_its_files() -> None:
    page = (REPO / "docs" / "scale-out.md").read_text()
    for name in ("docker/helm/airflow-values.yaml", "docker/helm/mlflow-values.yaml"):
        assert name in page
