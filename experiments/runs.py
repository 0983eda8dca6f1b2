"""MLflow runs of a study: one parent run per study, one child run per trial.

Trials run in several processes (search workers, Airflow tasks on other machines), so nothing
here relies on MLflow's per-process "active run": every run is created and ended through an
explicit ``MlflowClient`` and a child names its parent with the ``mlflow.parentRunId`` tag,
which is what the MLflow UI nests by. ``MLFLOW_RUN_ID`` leaking in from a parent process would
make fluent calls log into the wrong run (mlflow#15713); entry points drop it
(``tasador.core.process``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

STUDY_TAG = "optuna.study_name"
TRIAL_TAG = "optuna.trial_number"
STATE_TAG = "optuna.trial_state"
KIND_TAG = "tasador.run_kind"  # "study", "trial" or "refit"


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """The experiment's id, creating it (safely against a concurrent creator)."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name)
    except MlflowException:
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def create_run(
    mlflow_client: MlflowClient,
    experiment: str,
    name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
) -> str:
    """Create an MLflow run with the tags, nested under ``parent_run_id`` if given; its id."""
    all_tags = {**tags, MLFLOW_RUN_NAME: name}
    if parent_run_id is not None:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = mlflow_client.create_run(experiment, run_name=name, tags=all_tags)
    return str(run.info.run_id)


def log(
    mlflow_client: MlflowClient,
    run_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, Any] | None = None,
    step: int = 0,
) -> None:
    """One batched request (params as text, MLflow's own limit applies)."""
    now = int(time.time() * 1000)
    mlflow_client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def end(mlflow_client: MlflowClient, run_id: str, status: str = "FINISHED") -> None:
    """End a run (``FINISHED``, ``FAILED`` or ``KILLED``)."""
    mlflow_client.set_terminated(run_id, status=status)
