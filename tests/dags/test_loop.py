"""The whole loop through Airflow: ingestion + training DAGs against a real data API, real
PostgreSQL (RAW, CLEAN, Optuna storage) and a real MLflow server with S3 artifacts."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import pytest
from mlflow import MlflowClient
from pydantic import SecretStr

from experiments.study import load_study, study_name_for, trials_by_worker
from tasador.core import db, decisions_store, lineage, names, raw_store, services
from tasador.core.config import Settings
from tests.helpers.data_api import drift_zoo_api
from tests.helpers.search import load_batches


def raw_store_ids(settings: Settings) -> list[int]:
    return [b.id for b in raw_store.list_batches(db.engine("raw", settings.databases))]


@pytest.fixture
def loop_settings(settings: Settings, mlflow_server: str, make_database):
    port = services.free_port()
    name = f"realtor-loop-{uuid.uuid4().hex[:6]}"
    live = settings.updated(
        data_api_url=f"http://127.0.0.1:{port}",
        mlflow_tracking_uri=mlflow_server,
        optuna_storage_url=SecretStr(make_database("optuna")),
        model_name=name,
        experiment_name=name,
        search_trials=4,
        search_workers=2,
        search_sample_rows=600,
        search_cv_folds=2,
        shap_sample_rows=40,
    )
    with drift_zoo_api(live):
        yield live


def test_ingestion_then_training_registers_and_promotes_a_model(
    loop_settings, run_dag, local_airflow_server, tmp_path
):
    s = loop_settings
    ingestion = run_dag(s, "tasador_ingestion")
    decision = ingestion.returns["decide"]
    assert decision["verdict"] == "retrain"  # the baseline always trains

    training = run_dag(s, "tasador_training", {"decision_id": decision["decision_id"]})
    assert training.task_states["search"] == "success"
    result = training.returns["champion_challenger"]
    # Both workers run at once: each may start a trial while the other finishes the fourth.
    assert result["promoted"] and 4 <= result["trials_finished"] <= 5

    # Airflow ran the two mapped search workers side by side, not one after the other...
    path = f"dags/tasador_training/dagRuns/{training.run_id}/taskInstances/search/listMapped"
    mapped = local_airflow_server.get(path)["task_instances"]
    assert [(t["map_index"], t["state"]) for t in mapped] == [(0, "success"), (1, "success")]
    (start0, end0), (start1, end1) = [
        (datetime.fromisoformat(t["start_date"]), datetime.fromisoformat(t["end_date"]))
        for t in mapped
    ]
    assert start0 < end1 and start1 < end0
    # ...and the study's trials come from both (each trial names its worker).
    study, _ = load_study(study_name_for(raw_store_ids(s), s.mlflow.model_name), s)
    by_worker = trials_by_worker(study)
    assert set(by_worker) == {"0", "1"}, by_worker
    assert sum(by_worker.values()) == result["trials_finished"]

    client = MlflowClient(s.mlflow.mlflow_tracking_uri, s.mlflow.mlflow_tracking_uri)
    # The newest candidate is also the challenger, promoted or not.
    assert client.get_registered_model(s.mlflow.model_name).aliases == {
        "production": str(result["version"]),
        "challenger": str(result["version"]),
    }
    version = client.get_model_version(s.mlflow.model_name, str(result["version"]))
    batch_id = raw_store.list_batches(db.engine("raw", s.databases))[0].id
    assert lineage.decode_batch_ids(version.tags[lineage.BATCH_IDS]) == [batch_id]
    assert version.tags[lineage.DECISION_ID] == str(decision["decision_id"])
    stored = decisions_store.get_by_id(db.engine("clean", s.databases), decision["decision_id"])
    assert version.tags[lineage.RETRAIN_REASON] == stored.reason

    experiment = client.get_experiment_by_name(s.mlflow.experiment_name)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [
        r
        for r in runs
        if r.data.tags.get(lineage.STUDY_NAME)
        and "mlflow.parentRunId" not in r.data.tags
        and r.info.run_id != result["run_id"]
    ]
    assert len(parents) == 1
    children = [
        r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
        and "family" in r.data.params
    ]
    assert len(children) >= 4
    reports = {a.path for a in client.list_artifacts(result["run_id"], "report")}
    assert names.REPORT_FILE in reports, reports
    text = client.download_artifacts(result["run_id"], names.REPORT_FILE, str(tmp_path))
    assert stored.reason.split(".")[0] in Path(text).read_text()  # why it retrained

    # Re-running the training for the same decision registers nothing new.
    again = run_dag(s, "tasador_training", {"decision_id": decision["decision_id"]})
    assert again.returns["champion_challenger"]["version"] == result["version"]
    assert len(client.search_model_versions(f"name = '{s.mlflow.model_name}'")) == 1


def test_training_dag_holds_the_search_timeout_setting(search_settings, raw_sample, run_dag):
    # TASADOR_SEARCH_TIMEOUT_S reaches the mapped workers: the DAG's timeout_s Param is unset.
    s = search_settings.updated(search_timeout_s=3.0, search_trials=10_000)
    load_batches(s, raw_sample.iloc[:1400], [700, 700])
    training = run_dag(s, "tasador_training")
    result = training.returns["champion_challenger"]
    assert 1 <= result["trials_finished"] < 10_000

    study_name = study_name_for(raw_store_ids(s), s.mlflow.model_name)
    study, _ = load_study(study_name, s)
    first = min(t.datetime_start for t in study.trials)
    assert all((t.datetime_start - first).total_seconds() <= 3.0 for t in study.trials)
