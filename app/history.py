"""The model history the Models page shows, read from MLflow (read-only) and the promotion
audit in CLEAN (experiments.promotions)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from experiments import registry
from tasador.core import db, shadow_store
from tasador.core.config import Settings, UiSettings
from tasador.core.names import (
    SHAP_DIR,
    SHAP_PLOT,
    SHAP_SENTENCE,
    SHAP_TABLE,
    STUDY_DIR,
    STUDY_FIGURES,
)
from tasador.core.records import VersionStatus
from tasador.loop.status import model_status


@dataclass(frozen=True)
class ShapChange:
    """A version's SHAP importance against the production model it was compared with."""

    table: pd.DataFrame  # feature, new, previous, change
    png: bytes | None
    sentence: str | None


@dataclass(frozen=True)
class VersionEntry:
    """A version as the Models page lists it: its status and where to look at it in MLflow."""

    status: VersionStatus
    model_url: str
    run_url: str | None


def versions(settings: Settings) -> list[VersionEntry]:
    """Every version (newest first) with lineage, metrics, promotion and its run's links."""
    client = registry.connect(settings)
    public = (settings.ui.mlflow_public_url or registry.tracking_uri(settings.mlflow)).rstrip("/")
    entries = []
    for version in model_status(settings):
        run_url = None
        if version.run_id:
            experiment = client.get_run(version.run_id).info.experiment_id
            run_url = f"{public}/#/experiments/{experiment}/runs/{version.run_id}"
        model_url = f"{public}/#/models/{settings.mlflow.model_name}/versions/{version.version}"
        entries.append(VersionEntry(status=version, model_url=model_url, run_url=run_url))
    return sorted(entries, key=lambda e: -e.status.version)


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


def study_pictures(settings: Settings, run_id: str) -> dict[str, bytes]:
    """The study's pictures logged on ``run_id`` (experiments.report), by file name; {} when
    the run has none (versions trained before they were drawn)."""
    client = registry.connect(settings)
    if not any(f.path == STUDY_DIR for f in client.list_artifacts(run_id)):
        return {}
    with tempfile.TemporaryDirectory() as folder:
        local = Path(client.download_artifacts(run_id, STUDY_DIR, folder))
        return {n: (local / n).read_bytes() for n in STUDY_FIGURES if (local / n).exists()}


def study_url(ui: UiSettings) -> str | None:
    """optuna-dashboard's study list (it addresses studies by storage id, which the UI does
    not read), or None when no dashboard is configured."""
    return ui.optuna_dashboard_url.rstrip("/") + "/dashboard" if ui.optuna_dashboard_url else None


def live_disagreement(settings: Settings) -> shadow_store.Disagreement | None:
    """How ``@challenger`` disagrees with ``@production`` on the live rows serving shadowed;
    None when there is no challenger other than the version serving."""
    client = registry.connect(settings)
    challenger = registry.aliased_version(client, settings.mlflow, registry.CHALLENGER_ALIAS)
    production = registry.production_version(client, settings)
    if challenger is None or production is None or challenger.version == production.version:
        return None
    return shadow_store.disagreement(
        db.engine("raw", settings.databases),
        settings.mlflow.model_name,
        str(challenger.version),
        str(production.version),
    )
