"""Debian's Prometheus and promtool under test: the repository's monitoring files, a real
Prometheus in a temporary folder, and its HTTP query API."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tasador.core import services
from tests.helpers.dockerfile import DOCKER_DIR

PROMETHEUS_DIR = DOCKER_DIR / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "tasador.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "tasador_test.yml"
GRAFANA_DIR = DOCKER_DIR / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
STATSD_MAPPING = DOCKER_DIR / "statsd-exporter" / "mapping.yml"
# A metric name as the queries write them (labels, functions and keywords are not prefixed so).
METRIC = re.compile(r"\b(?:tasador|datasource|airflow)_[a-z_]+\b")
QUOTED = re.compile(r'"[^"]*"')  # label values such as dag_id="tasador_training"


def binary(name: str) -> str:
    """Debian's `prometheus` package (the Makefile installs it); missing fails the test."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not installed: `make test` installs Debian's prometheus package")
    return found


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule of the rules file."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in DASHBOARDS}


def targets(board: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, query target) of every panel of a dashboard."""
    return [(panel["title"], t) for panel in board["panels"] for t in panel.get("targets", [])]


def promql_queries() -> dict[str, str]:
    """Every PromQL expression of the dashboards, by where it is."""
    return {
        f"{name}: {title} ({t['refId']})": t["expr"]
        for name, board in dashboards().items()
        for title, t in targets(board)
        if "expr" in t
    }


def metric_names(expr: str) -> set[str]:
    """The Tasador, data API and Airflow metrics a PromQL expression reads."""
    return set(METRIC.findall(QUOTED.sub('""', expr)))


def statsd_metric_names() -> set[str]:
    """The series the StatsD exporter makes of Airflow's metrics (histograms get 3 each)."""
    names = set()
    for mapping in yaml.safe_load(STATSD_MAPPING.read_text())["mappings"]:
        if mapping.get("observer_type") == "histogram":
            names |= {f"{mapping['name']}{s}" for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(mapping["name"])
    return names


def statsd_series(name: str) -> tuple[str, str, frozenset[tuple[str, str]]] | None:
    """The series the exporter makes of a StatsD metric name by the mapping (name, kind,
    labels), or None when no pattern matches. A ``*`` stands for one dot-free part."""
    for mapping in yaml.safe_load(STATSD_MAPPING.read_text())["mappings"]:
        pattern = re.escape(mapping["match"]).replace(r"\*", "([^.]+)")
        if found := re.fullmatch(pattern, name):
            labels = {
                key: re.sub(r"\$(\d)", lambda m: found[int(m[1])], value)
                for key, value in mapping["labels"].items()
            }
            kind = mapping.get("observer_type", "counter")
            return mapping["name"], kind, frozenset(labels.items())
    return None


@contextmanager
def running_prometheus(tmp_path: Path, jobs: Mapping[str, str]) -> Iterator[str]:
    """A real Prometheus with the repository's rules, scraping each job's URL every second;
    yields its URL and stops it at the end."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [urlsplit(url).netloc]}]}
            for job, url in jobs.items()
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{services.free_port()}"
    command = [
        binary("prometheus"),
        f"--config.file={path}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address={urlsplit(url).netloc}",
    ]
    with services.running(command, f"{url}/-/ready", tmp_path / "prometheus.log"):
        yield url


def query(url: str, expr: str) -> list[dict[str, Any]]:
    """The instant vector ``expr`` gives now; a query Prometheus refuses fails the test."""
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=30)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *map(str, args)], capture_output=True, text=True, timeout=120
    )
