"""The ingestion DAG run through Airflow itself (`airflow dags test --use-executor`) against a real
data API."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tasador.core import db, decisions_store, raw_store, services
from tasador.core.config import Settings
from tasador.loop import dag_defaults
from tests.helpers.data_api import drift_zoo_api


@pytest.fixture
def live_settings(settings: Settings, mlflow_server: str):
    port = services.free_port()
    # The DAG's tasks read the settings as given: the tracking URI is one (decide asks MLflow).
    live = settings.updated(
        data_api_url=f"http://127.0.0.1:{port}",
        mlflow_tracking_uri=mlflow_server,
        model_name=f"ingestion-{uuid.uuid4().hex[:8]}",  # no production model yet
    )
    with drift_zoo_api(live):
        yield live


def counts(settings: Settings) -> tuple[int, int, int]:
    with (
        db.engine("raw", settings.databases).connect() as raw,
        db.engine("clean", settings.databases).connect() as cl,
    ):
        return (
            raw.execute(sa.text("select count(*) from batch_rows")).scalar_one(),
            cl.execute(sa.text("select count(*) from listings")).scalar_one(),
            cl.execute(sa.text("select count(*) from decisions")).scalar_one(),
        )


def retrain_events(airflow) -> list[dict]:
    """The extras of the retrain Asset's events, oldest first (Airflow's REST API)."""
    found = airflow.get(
        "assets/events",
        name_pattern=dag_defaults.RETRAIN_ASSET_URI,
        order_by="timestamp",
        limit=1000,
    )
    return [event["extra"] for event in found["asset_events"]]


def test_ingestion_collects_cleans_decides_and_is_idempotent(
    live_settings, run_dag, local_airflow_server
):
    events_before = len(retrain_events(local_airflow_server))
    run_dag(live_settings, "tasador_ingestion")  # baseline: always retrain
    run_dag(live_settings, "tasador_ingestion")  # same distribution: skip
    batches = raw_store.list_batches(db.engine("raw", live_settings.databases))
    assert [b.batch_number for b in batches] == [0, 1]
    decisions = decisions_store.latest_by_batch(db.engine("clean", live_settings.databases))
    assert [decisions[b.id].verdict for b in batches] == ["retrain", "skip"]
    events = retrain_events(local_airflow_server)
    assert len(events) == events_before + 1
    assert events[-1]["decision_id"] == decisions[batches[0].id].id

    before = counts(live_settings)
    run_dag(live_settings, "tasador_ingestion", {"batch_id": batches[1].id})
    assert counts(live_settings) == before
    assert decisions_store.latest_by_batch(db.engine("clean", live_settings.databases)) == decisions
