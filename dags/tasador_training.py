"""Training: plan the study -> N mapped search workers -> champion/challenger, SHAP, report.

Scheduled on the retrain Asset that the ingestion DAG updates (the event carries the decision id),
and runnable by hand with params. Every task calls a step of tasador.loop.training, the
orchestration `tasador search` runs too; the mapped search workers can land on different Celery
workers and share one Optuna study (PostgreSQL storage). Every step is safe to re-run: the study
is found again by name, a worker stops when the study's trial budget is spent, and the
champion/challenger step reuses the version it already registered for the study.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, dag, task

# Tasks import the loop's steps when they run: the DAG processor parses this file often, and
# the steps pull in pandas, MLflow and the model libraries.
from tasador.core import db
from tasador.core.config import get_settings
from tasador.core.process import prepare_process
from tasador.loop.dag_defaults import (
    RETRAIN_ASSET_URI,
    SEARCH_POOL,
    SEARCH_QUEUE,
    dag_args,
    optional_param,
)

RETRAIN = Asset(RETRAIN_ASSET_URI)
# A task that reaches a database owns the engines its step makes: @db.owning_engines() disposes
# of them when the task ends, so a worker process that runs many tasks keeps no idle pools.
prepare_process()  # this file is the entry point of every task process that runs it


@dag(
    dag_id="tasador_training",
    schedule=[RETRAIN],
    **dag_args(),
    params={
        "decision_id": optional_param(
            "integer", "Retrain decision (default: the triggering event's)."
        ),
        "trials": optional_param(
            "integer", "Trial budget of the study (default: settings).", minimum=1
        ),
        "workers": optional_param(
            "integer", "Parallel search workers (default: settings).", minimum=1, maximum=64
        ),
        "timeout_s": optional_param(
            "number", "Wall-clock budget of the search (default: settings).", exclusiveMinimum=0
        ),
    },
)
def tasador_training() -> None:
    """Plan a study, run the mapped search workers, then champion/challenger."""

    @task
    @db.owning_engines()
    def plan(
        params: dict[str, Any] | None = None, triggering_asset_events: Any = None
    ) -> dict[str, Any]:
        from tasador.loop import training

        assert params is not None  # Airflow injects the run's params
        decision_id = params["decision_id"]
        if decision_id is None and triggering_asset_events:
            events = triggering_asset_events[RETRAIN]
            decision_id = events[-1].extra.get("decision_id") if events else None
        settings = get_settings()
        planned = training.plan_retraining(settings, decision_id, params["trials"])
        workers = training.worker_count(settings.search, params["workers"])
        return {"study_name": planned.study_name, "workers": list(range(workers))}

    @task
    def worker_ids(planned: dict[str, Any]) -> list[int]:
        return list(planned["workers"])

    @task(
        execution_timeout=timedelta(hours=2),
        pool=SEARCH_POOL,
        queue=SEARCH_QUEUE,
        map_index_template="worker {{ worker_label }}",  # the mapped instance's name in the UI
    )
    @db.owning_engines()
    def search(worker: int, planned: dict[str, Any], params: dict[str, Any] | None = None) -> int:
        from airflow.sdk import get_current_context

        from tasador.loop.training import run_search_worker

        assert params is not None  # Airflow injects the run's params
        get_current_context()["worker_label"] = str(worker)  # type: ignore[typeddict-unknown-key]
        finished = run_search_worker(
            planned["study_name"], get_settings(), worker, params["timeout_s"]
        )
        print(f"worker {worker} finished {finished} trials of {planned['study_name']}")
        return finished

    # Once every worker is done, if at least one succeeded: the study holds its trials either way.
    @task(trigger_rule="all_done_min_one_success")
    @db.owning_engines()
    def champion_challenger(planned: dict[str, Any], finished: list[int]) -> dict[str, Any]:
        from tasador.loop.training import finish_retraining

        result = finish_retraining(planned["study_name"], get_settings())
        print(result.summary)
        return {
            "version": result.challenger.version,
            "family": result.challenger.family,
            "holdout_rmsle": result.challenger.metrics["rmsle"],
            "promoted": result.promoted,
            "summary": result.summary,
            "run_id": result.run_id,
            "trials_finished": sum(finished),
        }

    planned = plan()
    finished = search.partial(planned=planned).expand(worker=worker_ids(planned))
    champion_challenger(planned, finished)


tasador_training()
