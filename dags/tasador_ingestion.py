"""Ingestion: collect the next batch -> RAW -> CLEAN -> decide; request a retraining if needed.

Thin on purpose: every step is a tested function of the `tasador` package. An exhausted data API
ends the run with its tasks skipped, not failed. A retrain decision updates the retrain Asset,
which schedules the training DAG (the event carries the decision id).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, Param, dag, task
from airflow.sdk.exceptions import AirflowSkipException

# Tasks import the loop's steps when they run: the DAG processor parses this file often, and
# the steps pull in pandas, MLflow and the model libraries.
from tasador.core import db
from tasador.core.config import get_settings
from tasador.core.process import prepare_process
from tasador.loop.dag_defaults import RETRAIN_ASSET_URI, dag_args, optional_param

RETRAIN = Asset(RETRAIN_ASSET_URI)
# A task that reaches a database owns the engines its step makes: @db.owning_engines() disposes
# of them when the task ends, so a worker process that runs many tasks keeps no idle pools.
prepare_process()  # this file is the entry point of every task process that runs it


@dag(
    dag_id="tasador_ingestion",
    schedule=get_settings().data_api.ingest_schedule,
    **dag_args(),
    params={
        "batch_id": optional_param(
            "integer", "Re-process a stored RAW batch instead of collecting one."
        ),
        "force_retrain": Param(
            False, type="boolean", description="Retrain whatever the evidence says."
        ),
    },
)
def tasador_ingestion() -> None:
    """Collect the next batch, clean it, decide, and request a retraining if needed."""

    @task
    @db.owning_engines()
    def collect(params: dict[str, Any] | None = None) -> int:
        assert params is not None  # Airflow injects the run's params
        if params["batch_id"] is not None:
            return int(params["batch_id"])
        from tasador.loop import ingest

        result = ingest.collect(get_settings())
        if result.outcome == "exhausted":
            raise AirflowSkipException("no new batch: the data API has served every batch")
        assert result.batch_id is not None  # every outcome but "exhausted" has its batch
        return int(result.batch_id)

    @task
    @db.owning_engines()
    def clean(batch_id: int) -> int:
        from tasador.loop import ingest

        ingest.clean(get_settings().databases, batch_id)
        return batch_id

    @task
    @db.owning_engines()
    def decide(batch_id: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from tasador.loop.decide import decide_batch

        assert params is not None  # Airflow injects the run's params
        decision = decide_batch(get_settings(), batch_id, force=params["force_retrain"])
        print(f"batch {batch_id}: {decision.verdict}. {decision.reason}")
        return {"decision_id": decision.id, "batch_id": batch_id, "verdict": decision.verdict}

    @task.short_circuit
    def retrain_needed(decision: dict[str, Any]) -> bool:
        return bool(decision["verdict"] == "retrain")

    @task(outlets=[RETRAIN])
    def request_retrain(decision: dict[str, Any], outlet_events: Any = None) -> int:
        outlet_events[RETRAIN].extra = {
            "decision_id": decision["decision_id"],
            "batch_id": decision["batch_id"],
        }
        return int(decision["decision_id"])

    decision = decide(clean(collect()))
    retrain_needed(decision) >> request_retrain(decision)


tasador_ingestion()
