"""`tasador serve` as users run it: several worker processes, one alias decision, one log.

Real processes throughout: the CLI execs serving.server, uvicorn starts the workers, the
registry is the session's MLflow server and the inference log the test's RAW PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pandas as pd
import sqlalchemy as sa

from tasador.core import db, tables
from tasador.core.config import Settings, settings_env
from tests.helpers.mlflow import register
from tests.helpers.serving import LISTING, wait_until
from tests.helpers.serving_workers import tasador_serve, versions, workers_serving

# Modules of the search, training, the loop, the CLI and Airflow: none may be in a worker.
# (SHAP is no longer among them: a worker imports it when a version loads, to build its
# explainer off the request path: tests/serving/test_explainer_ready.py.)
FORBIDDEN = (
    "optuna",
    "airflow",
    "flaml",
    "dags",
    "datasource",
    "streamlit",
    "app",
    "tasador.cli",
    "tasador.loop",
    "tasador.startup",
    "experiments.study",
    "experiments.families",
    "experiments.search_worker",
    "experiments.champion",
    "experiments.spaces",
    "experiments.data",
)


def test_workers_follow_one_decision_and_log_each_request_exactly_once(
    serving_settings: Settings, xgb_model: Any, lgbm_model: Any, clean_sample: pd.DataFrame
) -> None:
    first = register(serving_settings, xgb_model, clean_sample, family="xgboost")
    with tasador_serve(serving_settings, workers=2) as url:
        wait_until(
            lambda: len(seen := workers_serving(url, 20)) == 2 and versions(seen) == {first},
            180,
            "both workers serve the first version",
        )
        seen = workers_serving(url)
        assert sum(body["worker"]["leader"] for body in seen.values()) == 1  # one polls

        second = register(serving_settings, lgbm_model, clean_sample, family="lightgbm")
        moved = time.monotonic()
        wait_until(
            lambda: len(seen := workers_serving(url, 20)) == 2 and versions(seen) == {second},
            60,
            "every worker swaps to the second version",
        )
        print(f"every worker swapped {time.monotonic() - moved:.1f}s after the alias moved")

        sent, answered_by = 0, set()
        for i in range(120):  # fresh connections: the requests spread over the workers
            response = httpx.post(
                f"{url}/predict",
                json={**LISTING, "bed": i % 6},
                headers={"Connection": "close"},
                timeout=30,
            )
            assert response.status_code == 200
            assert response.json()["model"]["version"] == second
            sent += 1
        answered_by = set(workers_serving(url, 20))
        # Whichever worker answers the scrape, /metrics adds up both workers' requests.
        scrapes = [
            httpx.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10).text
            for _ in range(6)
        ]
    # The server has stopped: every worker flushed its log on the way out.
    with db.engine("raw", serving_settings.databases).connect() as conn:
        table = tables.raw.inference_requests
        rows = conn.execute(
            sa.select(table.c.request_id, table.c.model_version).where(
                table.c.endpoint == "predict"
            )
        ).all()
    assert len(answered_by) == 2
    assert len(rows) == sent  # exactly once: none lost, none twice
    assert len({r.request_id for r in rows}) == sent
    assert {r.model_version for r in rows} == {second}
    name = serving_settings.mlflow.model_name
    for text in scrapes:
        assert f'tasador_requests_total{{endpoint="predict",status="200"}} {float(sent)}' in text
        assert (
            f'tasador_model_info{{alias="production",name="{name}",version="{second}"}} 1.0' in text
        )
        assert (
            f'tasador_model_info{{alias="production",name="{name}",version="{first}"}} 0.0' in text
        )
        per_worker = [
            line for line in text.splitlines() if line.startswith("tasador_model_version{")
        ]
        assert len(per_worker) == 2 and all(
            line.endswith(f" {float(second)}") for line in per_worker
        )


def test_a_serving_worker_imports_no_search_training_or_airflow(
    serving_settings: Settings, xgb_model: Any, clean_sample: pd.DataFrame
) -> None:
    """What a worker holds once it serves a model, read from its own ``sys.modules``."""
    version = register(serving_settings, xgb_model, clean_sample, family="xgboost")
    script = """
import json, os, sys, time
import serving.server  # the serving process's entry module (what `tasador serve` execs)
from tasador.core.process import PICKLE_SETTING, prepare_process
prepare_process(service=True, unpickles=False)  # as serving.server.main does
assert PICKLE_SETTING not in os.environ  # inherited from this test session, and removed
from fastapi.testclient import TestClient
from serving.api import app_from_environment
with TestClient(app_from_environment()) as client:
    deadline = time.monotonic() + 120
    while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.post("/predict", json={"state": "Texas"}).status_code == 200
print(json.dumps(sorted(sys.modules)))
"""
    env = {**os.environ, **settings_env(serving_settings)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "serving.api" in modules and "experiments.features" in modules  # it did serve
    bad = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"the serving process imported {bad}"
    assert version
