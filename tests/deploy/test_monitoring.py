"""Monitoring (docs/deployment.md, "Monitoring"): Prometheus's config and alerts, Grafana's
dashboards, proven with Debian's promtool and a real Prometheus scraping a real `tasador serve`.

Grafana itself does not run here: its dashboards are checked as data (data sources, metric names,
CLEAN and RAW columns through real migrated databases), and every PromQL query they hold is
evaluated by the real Prometheus.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from datasource.api import create_app as create_data_api
from tasador.core import migrations
from tasador.core.config import Settings
from tests.helpers import compose
from tests.helpers.dockerfile import REPO
from tests.helpers.mlflow import register
from tests.helpers.prometheus import (
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    RULE_TESTS,
    RULES,
    alerts,
    dashboards,
    metric_names,
    promql_queries,
    promtool,
    query,
    running_prometheus,
    statsd_metric_names,
    statsd_series,
    targets,
)
from tests.helpers.serving import LISTING, serve_in_thread, wait_until
from tests.helpers.serving_workers import tasador_serve, versions, workers_serving

RAW_COMPOSE = compose.load()
DOC = (REPO / "docs" / "deployment.md").read_text()
# An alert written `<query> <comparison> <number>`: its query is evaluated on its own.
THRESHOLD = re.compile(r"^(?P<query>.*\S)\s*(?:==|!=|>=|<=|>|<)\s*[0-9.]+\s*$", re.DOTALL)
# Grafana's time filter macro in the SQL of a panel, on a column.
TIME_FILTER = re.compile(r"\$__timeFilter\((\w+(?:\.\w+)?)\)")
# Queries that may rightly return nothing in the live test, and why. Queries of Airflow's
# metrics may too: no Airflow runs here (their names are checked against the StatsD mapping).
MAY_BE_EMPTY = {
    # The labelled gauge has no series before a first refusal; serving defines it.
    "TasadorModelRefused": "tasador_model_refused",
}
SERVING_METRICS = (REPO / "serving" / "metrics.py").read_text()


def test_promtool_accepts_the_config_and_the_rules() -> None:
    checked = promtool("check", "config", PROMETHEUS_DIR / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


def test_every_alert_passes_its_unit_tests() -> None:
    tested = promtool("test", "rules", RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_documented() -> None:
    cases = [
        case
        for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
    ]
    for rule in alerts():
        name = rule["alert"]
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), f"{name} never fires"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), (
            f"{name}: test a case where it stays quiet"
        )
        assert f"| `{name}` |" in DOC, f"docs/deployment.md: document {name}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_the_stack_mounts_the_monitoring_files() -> None:
    configs = RAW_COMPOSE["configs"]
    for name, config in configs.items():
        assert (REPO / config["file"]).is_file(), f"{name}: {config['file']} is missing"
    mounted = {m["source"] for s in RAW_COMPOSE["services"].values() for m in s.get("configs", [])}
    assert mounted == set(configs)
    for path in (*PROMETHEUS_DIR.rglob("*.yml"), *GRAFANA_DIR.rglob("*.yml")):
        if "tests" not in path.relative_to(REPO).parts:  # promtool's unit tests stay here
            assert any(REPO / c["file"] == path for c in configs.values()), f"mount {path}"
    assert {Path(c["file"]).name for c in configs.values()} >= {"serving.json", "loop.json"}


def test_dashboards_use_the_provisioned_data_sources() -> None:
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "tasador.yml").read_text()
    )["datasources"]
    uids = {source["uid"]: source["type"] for source in provisioned}
    assert {s["user"] for s in provisioned if "user" in s} == {"tasador_ui"}  # read-only role
    for name, board in dashboards().items():
        assert board["uid"] == f"tasador-{name}"
        for title, target in targets(board):
            source = target["datasource"]
            assert uids.get(source["uid"]) == source["type"], f"{name}: {title}"
            assert ("expr" in target) == (source["type"] == "prometheus"), f"{name}: {title}"


def _sql_targets() -> list[tuple[str, str, str]]:
    return [
        (f"{name}: {title}", target["datasource"]["uid"], target["rawSql"])
        for name, board in dashboards().items()
        for title, target in targets(board)
        if "rawSql" in target
    ]


def test_dashboard_sql_runs_on_real_raw_and_clean(
    make_migrated_database: Callable[[migrations.Database], str],
) -> None:
    """Every SQL query on the newest RAW and CLEAN schemas: a column or table that does not
    exist fails it. Grafana's time filter becomes the last day."""
    urls = {"raw": make_migrated_database("raw"), "clean": make_migrated_database("clean")}
    queries = _sql_targets()
    assert {uid for _, uid, _ in queries} == {"raw", "clean"}
    for where, uid, text in queries:
        runnable = TIME_FILTER.sub(r"\1 > now() - interval '1 day'", text)
        assert "$" not in runnable, f"{where}: a Grafana macro this test does not know"
        engine = sa.create_engine(urls[uid].replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(runnable)).fetchall()
        finally:
            engine.dispose()


def _traffic(url: str, data_url: str) -> None:
    for i in range(20):
        answer = httpx.post(f"{url}/predict", json={**LISTING, "bed": i % 5}, timeout=30)
        assert answer.status_code == 200
    refused = httpx.post(f"{url}/predict", json={**LISTING, "bed": "many"}, timeout=30)
    assert refused.status_code == 422
    assert httpx.get(f"{data_url}/data", params={"group_number": 1}).status_code == 200


def test_prometheus_evaluates_every_query_on_a_real_scrape(
    settings: Settings,
    mlflow_server: str,
    fail_fast_mlflow: None,
    xgb_model: Any,
    clean_sample: pd.DataFrame,
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:8]
    serving_settings = settings.updated(
        mlflow_tracking_uri=mlflow_server,
        experiment_name=f"monitoring-{tag}",
        model_name=f"monitoring-{tag}",
        serving_poll_s=0.5,
        serving_log_flush_s=0.2,
    )
    version = register(serving_settings, xgb_model, clean_sample, family="xgboost")
    data_api = create_data_api("course", scale=0.005, state_dir=tmp_path / "datasource")
    with (
        tasador_serve(serving_settings, workers=2) as url,
        serve_in_thread(data_api, "the data API") as data_url,
    ):
        wait_until(
            lambda: len(seen := workers_serving(url, 20)) == 2 and versions(seen) == {version},
            180,
            "both workers serve the model",
        )
        with running_prometheus(tmp_path, {"serving": url, "datasource": data_url}) as prom:
            _traffic(url, data_url)
            wait_until(
                lambda: bool(query(prom, 'count_over_time(up{job="serving"}[5m]) > 3')),
                60,
                "a few scrapes of serving",
            )
            _traffic(url, data_url)  # between scrapes: the rates have something to show
            time.sleep(3)  # two more scrapes and rule evaluations
            _check_queries(prom)


def _check_queries(prom: str) -> None:
    names = set(httpx.get(f"{prom}/api/v1/label/__name__/values", timeout=30).json()["data"])
    from_airflow = statsd_metric_names()
    queries = promql_queries() | {f"alert {rule['alert']}": rule["expr"] for rule in alerts()}
    for where, expr in queries.items():
        used = metric_names(expr)
        assert used or expr.startswith("up{"), f"{where}: names no metric of the stack"
        airflow = {n for n in used if n.startswith("airflow_")}
        assert airflow <= from_airflow, f"{where}: not made by the StatsD mapping: {airflow}"
        alert = where.removeprefix("alert ")
        if alert in MAY_BE_EMPTY:
            assert f'"{MAY_BE_EMPTY[alert]}"' in SERVING_METRICS
            names.add(MAY_BE_EMPTY[alert])
        assert used - airflow <= names, f"{where}: not exported: {sorted(used - airflow - names)}"
        if (threshold := THRESHOLD.match(expr)) and where.startswith("alert "):
            expr = threshold["query"]
        result = query(prom, expr)  # Prometheus accepts it, or the test fails
        if not (airflow or alert in MAY_BE_EMPTY):
            assert result, f"{where}: no series from {expr}"
    # Prometheus evaluated every rule on the scraped series without an error.
    rules = httpx.get(f"{prom}/api/v1/rules", timeout=30).json()["data"]["groups"]
    health = {r["name"]: (r["health"], r.get("lastError", "")) for g in rules for r in g["rules"]}
    assert health == {rule["alert"]: ("ok", "") for rule in alerts()}


# What Airflow 3 itself sends over StatsD when a task ends (its task runner's stats module) and
# when a DAG run ends (the scheduler's), configured as docker-compose.yml configures it.
AIRFLOW_SENDS = """
from datetime import timedelta
from airflow._shared.observability.metrics import stats as scheduler_stats
from airflow.configuration import conf
from airflow.observability.metrics import stats_utils as scheduler_utils
from airflow.sdk._shared.observability.metrics import stats as task_stats
from airflow.sdk.observability.metrics import stats_utils as task_utils

legacy = conf.getboolean("metrics", "legacy_names_on")
task_stats.initialize(factory=task_utils.get_stats_factory(), export_legacy_names=legacy)
scheduler_stats.initialize(factory=scheduler_utils.get_stats_factory(), export_legacy_names=legacy)
task_stats.incr("ti.finish", tags={"dag_id": "tasador_ingestion", "task_id": "collect",
                                   "state": "success"})
scheduler_stats.timing("dagrun.duration.failed", dt=timedelta(seconds=90),
                       tags={"dag_id": "tasador_training"})
"""


@pytest.mark.slow
def test_the_statsd_mapping_reads_what_airflow_sends(tmp_path: Path) -> None:
    """Airflow's own stats modules send to a UDP socket here; the mapping's patterns turn
    what arrives into the series the alerts read."""
    airflow_env = compose.load()["x-airflow-env"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(30)
        env = {
            **os.environ,
            **{k: str(v) for k, v in airflow_env.items() if k.startswith("AIRFLOW__METRICS__")},
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(receiver.getsockname()[1]),
            "AIRFLOW_HOME": str(tmp_path),
        }
        sent = subprocess.run(
            [sys.executable, "-c", AIRFLOW_SENDS], env=env, capture_output=True, text=True
        )
        assert sent.returncode == 0, sent.stderr
        lines = []
        with contextlib.suppress(TimeoutError):
            while True:
                lines += receiver.recv(65536).decode().splitlines()
                receiver.settimeout(1)  # the rest of what was sent is already there
    series = {mapped for line in lines if (mapped := statsd_series(line.split(":")[0]))}
    assert (
        "airflow_task_finish_total",
        "counter",
        frozenset({("dag_id", "tasador_ingestion"), ("task_id", "collect"), ("state", "success")}),
    ) in series, lines
    assert (
        "airflow_dagrun_duration_seconds",
        "histogram",
        frozenset({("dag_id", "tasador_training"), ("state", "failed")}),
    ) in series, lines
