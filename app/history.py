"""The model history the Models page shows, read from MLflow (read-only) and the promotion
audit in CLEAN (experiments.promotions)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments import promotions, registry
from tasador.core import db
from tasador.core.config import Settings
from tasador.core.names import SHAP_DIR, SHAP_PLOT, SHAP_SENTENCE, SHAP_TABLE
from tasador.loop.status import model_status


@dataclass(frozen=True)
class ShapChange:
    """A version's SHAP importance against the production model it was compared with."""

    table: pd.DataFrame  # feature, new, previous, change
    png: bytes | None
    sentence: str | None


def versions(settings: Settings) -> list[dict[str, Any]]:
    """Every version (newest first) with lineage, metrics, promotion and its run's links."""
    found = model_status(settings)
    uri = registry.tracking_uri(settings)
    client = registry.connect(settings)
    decided = {
        p.challenger_version: p
        for p in promotions.history(db.engine("clean", settings), settings.model_name)
    }
    public = (settings.mlflow_public_url or uri).rstrip("/")
    for version in found:
        promotion = decided.get(version["version"])
        version["decided_at"] = promotion.decided_at if promotion else None
        version["previous_version"] = promotion.previous_version if promotion else None
        version["model_url"] = (
            f"{public}/#/models/{settings.model_name}/versions/{version['version']}"
        )
        version["run_url"] = None
        if version["run_id"]:
            experiment = client.get_run(version["run_id"]).info.experiment_id
            version["run_url"] = f"{public}/#/experiments/{experiment}/runs/{version['run_id']}"
    return sorted(found, key=lambda v: -v["version"])


def shap_change(settings: Settings, run_id: str) -> ShapChange | None:
    """The SHAP comparison logged on ``run_id``; None when the run has none."""
    client = registry.connect(settings)
    if not any(f.path == SHAP_DIR for f in client.list_artifacts(run_id)):
        return None
    with tempfile.TemporaryDirectory() as folder:
        local = Path(client.download_artifacts(run_id, SHAP_DIR, folder))
        table = pd.read_csv(local / SHAP_TABLE)
        png = (local / SHAP_PLOT).read_bytes() if (local / SHAP_PLOT).exists() else None
        sentence = (
            (local / SHAP_SENTENCE).read_text().strip()
            if (local / SHAP_SENTENCE).exists()
            else None
        )
    return ShapChange(table, png, sentence)


def study_url(settings: Settings) -> str | None:
    """optuna-dashboard's study list (it addresses studies by storage id, which the UI does
    not read), or None when no dashboard is configured."""
    return (
        settings.optuna_dashboard_url.rstrip("/") + "/dashboard"
        if settings.optuna_dashboard_url
        else None
    )
