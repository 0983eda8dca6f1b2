"""The leaderboard across retrains: every study's best trial per family (cross-validated), its
challenger and the production model of the time (both on that study's shared holdout), and the
verdict, with links to MLflow and optuna-dashboard. Read-only: MLflow runs and the promotion
audit in CLEAN (experiments.promotions)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient

from experiments import promotions, registry, runs
from tasador.core import db
from tasador.core.config import Settings
from tasador.core.metrics import PRIMARY

CV = f"cv_{PRIMARY}"
HOLDOUT = f"holdout_{PRIMARY}"


def _run_url(public: str, experiment_id: str, run_id: str) -> str:
    return f"{public}/#/experiments/{experiment_id}/runs/{run_id}"


def _study_ids(settings: Settings, names: set[str]) -> dict[str, int]:
    """optuna-dashboard addresses a study by its storage id; {} when the storage is unreadable.

    The id is the key of Optuna's ``studies`` table, read with SQL: the UI image has neither
    Optuna nor the search code (experiments.study needs the model families' libraries)."""
    if settings.databases.optuna_storage_url is None or not names:
        return {}
    query = sa.text("SELECT study_id, study_name FROM studies WHERE study_name IN :names")
    try:
        with db.engine("optuna", settings.databases).connect() as connection:
            rows = connection.execute(
                query.bindparams(sa.bindparam("names", expanding=True)), {"names": sorted(names)}
            )
            return {name: study_id for study_id, name in rows}
    except Exception:  # the links are a convenience: the board shows without them
        return {}


def best_trials(client: MlflowClient, experiment_id: str) -> pd.DataFrame:
    """Per study and family: the completed trial with the lowest cross-validated RMSLE."""
    found = client.search_runs(
        [experiment_id],
        f"tags.`{runs.KIND_TAG}` = 'trial' and tags.`{runs.STATE_TAG}` = 'COMPLETE'",
        max_results=5000,
    )
    rows = [
        {
            "study": r.data.tags.get(runs.STUDY_TAG),
            "family": r.data.tags.get(registry.FAMILY_TAG),
            "trial": int(r.data.tags.get(runs.TRIAL_TAG, -1)),
            CV: r.data.metrics.get(CV),
            # Refit on the search sample and scored on the shared holdout after the study
            # (experiments.family_scores): comparable with the challenger and production.
            HOLDOUT: r.data.metrics.get(HOLDOUT),
            "run_id": r.info.run_id,
        }
        for r in found
    ]
    columns = ["study", "family", "trial", CV, HOLDOUT, "run_id"]
    frame = pd.DataFrame(rows, columns=columns).dropna(subset=[CV])
    if frame.empty:
        return frame
    best = frame.loc[frame.groupby(["study", "family"])[CV].idxmin()]
    return best.sort_values(["study", CV]).reset_index(drop=True)


def board(settings: Settings) -> dict[str, Any]:
    """``retrains`` (one row per study, newest first) and ``trials`` (best per family)."""
    client = registry.connect(settings)
    public = (settings.ui.mlflow_public_url or registry.tracking_uri(settings.mlflow)).rstrip("/")
    experiment = client.get_experiment_by_name(settings.mlflow.experiment_name)
    decisions = promotions.history(
        db.engine("clean", settings.databases), settings.mlflow.model_name
    )
    trials = best_trials(client, experiment.experiment_id) if experiment else pd.DataFrame()
    dashboard = (settings.ui.optuna_dashboard_url or "").rstrip("/")
    ids = _study_ids(settings, {d.study_name for d in decisions}) if dashboard else {}
    retrains = []
    for d in reversed(decisions):
        version = client.get_model_version(settings.mlflow.model_name, str(d.challenger_version))
        run = client.get_run(version.run_id) if version.run_id else None
        study_id = ids.get(d.study_name)
        retrains.append(
            {
                "decided": d.decided_at,
                "study": d.study_name,
                "challenger": d.challenger_version,
                "family": version.tags.get(registry.FAMILY_TAG, "?"),
                f"challenger {HOLDOUT}": d.challenger_rmsle,
                "production then": d.previous_version,
                f"production {HOLDOUT}": d.previous_rmsle,
                "promoted": d.promoted,
                "holdout rows": d.holdout_rows,
                "MLflow run": _run_url(public, run.info.experiment_id, run.info.run_id)
                if run
                else None,
                "optuna-dashboard": (
                    f"{dashboard}/dashboard/studies/{study_id}"
                    if study_id is not None
                    else f"{dashboard}/dashboard"
                )
                if dashboard
                else None,
            }
        )
    if not trials.empty and experiment is not None:
        trials["MLflow run"] = [
            _run_url(public, experiment.experiment_id, r) for r in trials.pop("run_id")
        ]
    return {"retrains": pd.DataFrame(retrains), "trials": trials}
