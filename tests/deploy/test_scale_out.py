"""docs/scale-out.md's files: the Airflow chart's values and the search fleet's Deployment."""

from __future__ import annotations

import re

import yaml

from tasador.loop.dag_defaults import SEARCH_QUEUE
from tests.helpers import compose
from tests.helpers.dockerfile import DOCKER_DIR, REPO

VALUES = yaml.safe_load((DOCKER_DIR / "helm" / "airflow-values.yaml").read_text())
FLEET = yaml.safe_load((DOCKER_DIR / "helm" / "search-workers.yaml").read_text())
RELEASE = compose.env_file()["TAG"]


def test_the_chart_runs_the_released_airflow_image_with_celery() -> None:
    assert VALUES["defaultAirflowRepository"].endswith("/tasador-airflow")
    assert VALUES["defaultAirflowTag"] == RELEASE
    assert VALUES["executor"] == "CeleryExecutor"
    # Managed PostgreSQL and broker; the DAGs are in the image.
    assert VALUES["postgresql"]["enabled"] is False
    assert VALUES["redis"]["enabled"] is False
    assert VALUES["dags"]["gitSync"]["enabled"] is False
    assert "--queues default" in " ".join(VALUES["workers"]["args"])


def test_the_search_fleet_takes_the_search_queue_alone() -> None:
    assert FLEET["kind"] == "Deployment" and FLEET["apiVersion"] == "apps/v1"
    spec = FLEET["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == f"{VALUES['defaultAirflowRepository']}:{RELEASE}"
    args = container["args"]
    assert args[:3] == ["airflow", "celery", "worker"]
    assert args[args.index("--queues") + 1] == SEARCH_QUEUE


def test_no_secret_value_is_in_either_file() -> None:
    env = {e["name"]: e for e in FLEET["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    for path in (DOCKER_DIR / "helm").glob("*.yaml"):
        text = path.read_text()
        assert "change-me" not in text, path
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), f"{path}: credentials in a URL"


def test_the_scale_out_page_names_its_files() -> None:
    page = (REPO / "docs" / "scale-out.md").read_text()
    for name in ("docker/helm/airflow-values.yaml", "docker/helm/search-workers.yaml"):
        assert name in page
