"""The session's MLflow registry: its artifact bucket and registering models as training does."""

from __future__ import annotations

from typing import Any

import pandas as pd

from experiments import registry, runs
from experiments.scoring.ranges import RangeTable
from tasador.core import lineage
from tasador.core.columns import TARGET
from tasador.core.config import Settings

MLFLOW_TEST_BUCKET = "mlflow-test"


def register(
    settings: Settings,
    model: Any,
    example: pd.DataFrame,
    *,
    family: str,
    batch_ids: tuple[int, ...] = (1, 2),
    promote: bool = True,
    validation: pd.DataFrame | None = None,
    holdout_rmsle: float = 0.5,
    price_ranges: RangeTable | None = None,
) -> str:
    """Register ``model`` as a new version the way training does; point the alias at it.

    ``validation``: rows (with prices) stored as its validation sample; ``holdout_rmsle``: the
    holdout RMSLE on record for it; ``price_ranges``: its calibrated ranges (none: a version
    registered before versions had them)."""
    client = registry.connect(settings)
    experiment = runs.experiment_id(client, settings.mlflow.experiment_name)
    reason = f"Retrain. test model {family}"
    tags = {
        lineage.BATCH_IDS: lineage.encode_batch_ids(batch_ids),
        lineage.RETRAIN_REASON: reason,
        lineage.STUDY_NAME: f"{settings.mlflow.model_name}-batches-1-2",
        "family": family,
    }
    run_id = runs.create_run(client, experiment, f"refit-{family}", tags)
    runs.log(client, run_id, metrics={"holdout_rmsle": holdout_rmsle})
    example_rows = example.drop(columns=[TARGET]).head(3)
    background = example.drop(columns=[TARGET]).head(200)  # training rows: the SHAP reference
    version = registry.log_and_register(
        model, example_rows, settings.mlflow, run_id, tags, background, validation, price_ranges
    )
    runs.end(client, run_id)
    if promote:
        client.set_model_version_tag(
            settings.mlflow.model_name, version.version, "promoted", "true"
        )
        client.set_model_version_tag(
            settings.mlflow.model_name, version.version, "decided_at", "2025-01-02T03:04:05+00:00"
        )
        client.set_model_version_tag(
            settings.mlflow.model_name,
            version.version,
            "decision",
            f"Version {version.version} wins.",
        )
        registry.set_production(client, settings.mlflow, version.version)
    return str(version.version)
