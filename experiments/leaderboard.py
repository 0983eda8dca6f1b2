"""MLflow 3 as the leaderboard: each candidate's logged model carries its holdout metrics.

After champion/challenger (experiments.champion), :func:`record_candidate`:

- links the datasets to the version's run (``mlflow.data`` entities, digest = the data hash,
  contexts ``training`` and ``holdout``) together with the logged model;
- logs the holdout metrics on the **logged model** (``model_id``) and the holdout dataset, so the
  experiment's *Models* tab (``search_logged_models``) lists every candidate with its
  ``holdout_rmsle`` and can sort by it; the runs keep the same names (``holdout_*``);
- writes the **model card** (batches and rows, the data's dates, price-scale metrics, why it
  was retrained, the verdict, the top SHAP drivers) as the registered version's description;
- points the alias ``challenger`` at the latest candidate (``production`` stays the winner);
- tags the runs with the code version (``mlflow.source.git.commit``, ``tasador.code_version``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelInput, Metric

from experiments import registry
from tasador.core import tables
from tasador.core.config import MlflowSettings
from tasador.core.metrics import PRIMARY
from tasador.core.names import HOLDOUT_PREFIX

CHALLENGER_ALIAS = registry.CHALLENGER_ALIAS
CODE_VERSION_TAG = "tasador.code_version"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
DIGEST_CHARS = 36  # MLflow's dataset digest column holds 36 characters; the tag keeps all 64
CONTEXT_TAG = "mlflow.data.context"
TOP_DRIVERS = 5
_REPO = Path(__file__).resolve().parents[1]


def code_version() -> str:
    """The code that trained: ``TASADOR_CODE_VERSION`` (images set their tag there), else the
    git commit of this checkout (``-dirty`` when it has changes), else ``unknown``."""
    given = os.environ.get("TASADOR_CODE_VERSION")
    if given:
        return given
    try:
        commit = subprocess.run(
            ["git", "-C", str(_REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def code_tags() -> dict[str, str]:
    """Tags that record the code version on a run (MLflow's own git tag when it is a commit)."""
    version = code_version()
    tags = {CODE_VERSION_TAG: version}
    commit = version.removesuffix("-dirty")
    if len(commit) == 40 and all(c in "0123456789abcdef" for c in commit):
        tags[GIT_COMMIT_TAG] = commit
    return tags


def dataset(name: str, data_hash: str, rows: int, batch_ids: Sequence[int]) -> Dataset:
    """The MLflow dataset entity of CLEAN rows of ``batch_ids`` identified by their hash."""
    return Dataset(
        name=name,
        digest=data_hash[:DIGEST_CHARS],
        source_type="tasador-clean",
        source=json.dumps({"database": "clean", "batch_ids": list(batch_ids)}),
        profile=json.dumps({"num_rows": rows, "data_hash": data_hash}),
    )


def data_dates(engine: sa.Engine, batch_ids: Sequence[int]) -> tuple[str, str] | None:
    """The first and last day the batches were cleaned (their data's arrival dates)."""
    batches = tables.clean.cleaned_batches
    with engine.connect() as conn:
        first, last = conn.execute(
            sa.select(sa.func.min(batches.c.cleaned_at), sa.func.max(batches.c.cleaned_at)).where(
                batches.c.id.in_(list(batch_ids))
            )
        ).one()
    if first is None:
        return None
    return f"{first:%Y-%m-%d}", f"{last:%Y-%m-%d}"


def model_card(
    *,
    model_name: str,
    result: Any,  # experiments.champion.RetrainingResult (not imported: no cycle)
    plan: Any,  # experiments.study.StudyPlan
    dates: tuple[str, str] | None,
    drivers: pd.DataFrame | None,
    code: str,
) -> str:
    """The registered version's description (Markdown): what it learnt from and how it did."""
    c = result.challenger
    m = c.metrics
    lines = [
        f"**{model_name} v{c.version}** ({c.family}) — "
        f"{'promoted to production' if result.promoted else 'not promoted'}.",
        "",
        f"- Data: batches {', '.join(map(str, plan.batch_ids))}; {plan.training_rows:,} training "
        f"rows, {result.holdout_rows:,} shared holdout rows"
        + (f"; cleaned {dates[0]} to {dates[1]}" if dates else "")
        + f"; data hash `{plan.data_hash[:12]}`.",
        f"- Holdout: RMSLE {m.get(PRIMARY, float('nan')):.4f}, MAE ${m.get('mae', 0):,.0f}, "
        f"MAPE {m.get('mape', 0):.1%}, R² {m.get('r2', float('nan')):.3f} (price scale).",
        f"- Why retrained: {plan.reason or 'no reason recorded'}",
        f"- Verdict: {result.summary}",
    ]
    if drivers is not None and not drivers.empty:
        top = drivers.sort_values("new", ascending=False).head(TOP_DRIVERS)
        shown = ", ".join(f"{r.feature} ({r.new:.3f})" for r in top.itertuples())
        lines.append(f"- Top SHAP drivers (mean |SHAP|, log price): {shown}.")
    lines.append(f"- Study `{plan.study_name}`; code `{code}`.")
    return "\n".join(lines)


def record_candidate(
    mlflow_client: MlflowClient,
    mlflow: MlflowSettings,
    engine: sa.Engine,
    *,
    result: Any,
    plan: Any,
    holdout_hash: str,
    drivers: pd.DataFrame | None,
) -> None:
    """Datasets, model-linked holdout metrics, model card, ``challenger`` alias, code version."""
    name, number = mlflow.model_name, str(result.challenger.version)
    version = mlflow_client.get_model_version(name, number)
    model_id = registry.model_id_of(version)
    training = dataset("training", plan.data_hash, plan.training_rows, plan.batch_ids)
    holdout = dataset("holdout", holdout_hash, result.holdout_rows, plan.batch_ids)
    mlflow_client.log_inputs(
        result.run_id,
        datasets=[
            DatasetInput(training, tags=[InputTag(CONTEXT_TAG, "training")]),
            DatasetInput(holdout, tags=[InputTag(CONTEXT_TAG, "holdout")]),
        ],
        models=[LoggedModelInput(model_id)] if model_id else None,
    )
    if model_id:
        _log_model_metrics(
            mlflow_client, result.run_id, model_id, holdout, result.challenger.metrics
        )
    code = code_version()
    for run_id in (result.run_id, result.parent_run_id):
        for key, value in code_tags().items():
            mlflow_client.set_tag(run_id, key, value)
    card = model_card(
        model_name=name,
        result=result,
        plan=plan,
        dates=data_dates(engine, plan.batch_ids),
        drivers=drivers,
        code=code,
    )
    mlflow_client.update_model_version(name, number, description=card)
    newest = max(int(v.version) for v in mlflow_client.search_model_versions(f"name = '{name}'"))
    if int(number) == newest:  # a study finished again must not take the alias back
        mlflow_client.set_registered_model_alias(name, CHALLENGER_ALIAS, number)


def _log_model_metrics(
    mlflow_client: MlflowClient,
    run_id: str,
    model_id: str,
    holdout: Dataset,
    metrics: Mapping[str, float],
) -> None:
    now = int(time.time() * 1000)
    mlflow_client.log_batch(
        run_id,
        metrics=[
            Metric(
                f"{HOLDOUT_PREFIX}{key}",
                float(value),
                now,
                0,
                model_id=model_id,
                dataset_name=holdout.name,
                dataset_digest=holdout.digest,
            )
            for key, value in metrics.items()
        ],
    )


def ranked_models(mlflow_client: MlflowClient, experiment_id: str) -> list[Any]:
    """The experiment's logged models, best holdout RMSLE first: what the Models tab shows
    when sorted by that column."""
    return list(
        mlflow_client.search_logged_models(
            experiment_ids=[experiment_id],
            order_by=[{"field_name": f"metrics.{HOLDOUT_PREFIX}{PRIMARY}", "ascending": True}],
        )
    )
