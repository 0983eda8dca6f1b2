"""The live drift DAG, run through Airflow: it stores the check `tasador monitor` would."""

from __future__ import annotations

from datasource.generator import generate_listings
from tests.helpers.live_drift import OTHER_STATES, log_served, stored_checks


def test_the_monitoring_dag_stores_a_live_drift_check(live, run_dag):
    settings, version = live
    log_served(settings, generate_listings(400, seed=21, states=OTHER_STATES), version)
    run = run_dag(settings, "tasador_monitoring")
    assert run.task_states == {"live_drift": "success"}
    [row] = stored_checks(settings)
    assert run.returns["live_drift"] == {
        "stored": True,
        "alarm": True,
        "rows": 400,
        "summary": row.summary,
    }
