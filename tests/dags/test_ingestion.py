"""The ingestion DAG run through Airflow itself (`airflow dags test`) against a real data API."""

from __future__ import annotations

import os
import sqlite3
import uuid

import httpx
import pytest
import sqlalchemy as sa

from tasador.core import db, decisions_store, raw_store, services
from tasador.core.config import Settings
from tasador.loop import dag_defaults


@pytest.fixture
def live_settings(settings: Settings, mlflow_server: str):
    port = services.free_port()
    # The DAG's tasks read the settings as given: the tracking URI is one (decide asks MLflow).
    live = settings.model_copy(
        update={
            "data_api_url": f"http://127.0.0.1:{port}",
            "mlflow_tracking_uri": mlflow_server,
            "model_name": f"ingestion-{uuid.uuid4().hex[:8]}",  # no production model yet
        }
    )
    command = services.tasador_command(
        "datasource", "--port", str(port), "--scenario", "drift-zoo", "--scale", "0.005"
    )
    env = {**os.environ, "TASADOR_STATE_DIR": str(settings.state_dir)}
    with services.running(
        command, f"{live.data_api_url}/health", settings.state_dir / "datasource.log", env=env
    ):
        httpx.get(f"{live.data_api_url}/restart_data_generation", params={"group_number": 1})
        yield live


def counts(settings: Settings) -> tuple[int, int, int]:
    with db.engine("raw", settings).connect() as raw, db.engine("clean", settings).connect() as cl:
        return (
            raw.execute(sa.text("select count(*) from batch_rows")).scalar_one(),
            cl.execute(sa.text("select count(*) from listings")).scalar_one(),
            cl.execute(sa.text("select count(*) from decisions")).scalar_one(),
        )


def retrain_events(airflow_home) -> list[str]:
    with sqlite3.connect(airflow_home / "airflow.db") as conn:
        return [
            row[0]
            for row in conn.execute(
                "select e.extra from asset_event e join asset a on a.id = e.asset_id "
                "where a.name = ?",
                (dag_defaults.RETRAIN_ASSET_URI,),
            )
        ]


def test_ingestion_collects_cleans_decides_and_is_idempotent(live_settings, run_dag, airflow_home):
    events_before = len(retrain_events(airflow_home))
    run_dag(live_settings, "tasador_ingestion")  # baseline: always retrain
    run_dag(live_settings, "tasador_ingestion")  # same distribution: skip
    batches = raw_store.list_batches(db.engine("raw", live_settings))
    assert [b.batch_number for b in batches] == [0, 1]
    decisions = decisions_store.latest_by_batch(db.engine("clean", live_settings))
    assert [decisions[b.id].verdict for b in batches] == ["retrain", "skip"]
    events = retrain_events(airflow_home)
    assert len(events) == events_before + 1
    assert f'"decision_id": {decisions[batches[0].id].id}' in events[-1]

    before = counts(live_settings)
    run_dag(live_settings, "tasador_ingestion", {"batch_id": batches[1].id})
    assert counts(live_settings) == before
    assert decisions_store.latest_by_batch(db.engine("clean", live_settings)) == decisions
