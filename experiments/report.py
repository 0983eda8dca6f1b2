"""The model-change report: one Markdown page per retraining, logged as an MLflow artifact.

It answers, in order: why the platform retrained (the decision record), what the search found
(best trial per family), how the challenger and the production model scored on the shared
holdout, what changed in the model's reasoning (SHAP), and whether the alias moved.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import matplotlib
import numpy as np
import optuna
import pandas as pd
import sqlalchemy as sa
from matplotlib.figure import Figure  # no pyplot: no global state
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from experiments import spaces
from experiments.explain import Explanation
from tasador.core import db, decisions_store, shadow_store
from tasador.core.config import Settings
from tasador.core.decisions_store import Decision
from tasador.core.metrics import PRIMARY
from tasador.core.names import REPORT_FILE, SHAP_DIR, SHAP_PLOT, STUDY_DIR, STUDY_FIGURES
from tasador.core.shadow_store import WITHIN, Disagreement


def family_summary(study: optuna.Study) -> pd.DataFrame:
    """Per family: trials by state and the best cross-validated RMSLE (best family first)."""
    rows: dict[str, dict[str, Any]] = {}
    for trial in study.get_trials(deepcopy=False):
        family = trial.params.get(spaces.FAMILY_PARAM)
        if family is None:
            continue
        row = rows.setdefault(
            family,
            {
                "family": family,
                "complete": 0,
                "pruned": 0,
                "failed": 0,
                f"best_cv_{PRIMARY}": None,
                "best_trial": None,
            },
        )
        if trial.state == TrialState.COMPLETE:
            row["complete"] += 1
            best = row[f"best_cv_{PRIMARY}"]
            if best is None or trial.value < best:
                row[f"best_cv_{PRIMARY}"], row["best_trial"] = trial.value, trial.number
        elif trial.state == TrialState.PRUNED:
            row["pruned"] += 1
        elif trial.state == TrialState.FAIL:
            row["failed"] += 1
    table = pd.DataFrame(list(rows.values()))
    return table.sort_values(f"best_cv_{PRIMARY}", na_position="last").reset_index(drop=True)


def _markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "–"
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |"]
    lines.append("|" + "---|" * len(frame.columns))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def model_change_report(
    *,
    model_name: str,
    result: Any,  # experiments.champion.RetrainingResult (not imported: no cycle)
    plan: Any,  # experiments.study.StudyPlan
    study: optuna.Study,
    explanation: Explanation,
    decision: Decision | None,
    shadow: Disagreement | None = None,
) -> str:
    """The Markdown report of a retraining: why, what the search found, the verdict, and (with
    a production model to compare with) how the two disagree on live traffic."""
    challenger = result.challenger
    sections = [
        f"# Model change report: {model_name} version {challenger.version}",
        f"Study `{plan.study_name}` · generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} · "
        f"**{'promoted to production' if result.promoted else 'not promoted'}**",
        "## Why it retrained",
    ]
    if decision is not None:
        sections.append(
            f"Decision {decision.id} on batch {decision.batch_id} "
            f"({decision.created_at:%Y-%m-%d %H:%M}), verdict **{decision.verdict}**:\n\n"
            f"> {decision.reason}"
        )
    elif plan.reason:
        sections.append(f"> {plan.reason}")
    else:
        sections.append("No decision record was given for this retraining.")
    sections.append(
        f"Batches {', '.join(map(str, plan.batch_ids))}: {plan.training_rows} training rows "
        f"(data hash `{plan.data_hash[:12]}`), {result.holdout_rows} shared holdout rows."
    )

    best = min(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
        key=lambda t: cast(float, t.value),  # a completed trial has its value
    )
    sections += [
        "## What the search found",
        f"{len(study.trials)} trials started for a budget of {plan.n_trials} finished ones; "
        f"{plan.cv_folds}-fold CV on up to {plan.sample_rows} rows. Best trial {best.number} "
        f"({best.params[spaces.FAMILY_PARAM]}), CV {PRIMARY} {best.value:.4f}:",
        "```\n" + "\n".join(f"{k} = {v}" for k, v in sorted(best.params.items())) + "\n```",
        _markdown_table(family_summary(study)),
        "## Champion vs challenger on the shared holdout",
        _markdown_table(result.comparison()),
        result.summary,
        "## What changed in the model (SHAP)",
        explanation.sentence,
        _markdown_table(explanation.diff),
        f"![SHAP importance](../{SHAP_DIR}/{SHAP_PLOT}) (artifact "
        f"`{SHAP_DIR}/{SHAP_PLOT}` of run `{result.run_id}`; mean |SHAP| per input column, "
        "log-price units)",
        "## The study in pictures",
        "\n\n".join(f"![{name}](../{STUDY_DIR}/{name})" for name in STUDY_FIGURES)
        + f"\n\n(artifacts `{STUDY_DIR}/` of run `{result.run_id}`: optimisation history, "
        "parameter importance per family, parallel coordinates)",
        *([shadow_section(shadow)] if shadow is not None else []),
        "## Outcome",
        (
            f"The alias `production` now points at version {challenger.version}."
            if result.promoted
            else (
                f"The alias `production` stays on version {result.production.version}; "
                f"version {challenger.version} stays registered for comparison."
            )
        ),
    ]
    return "\n\n".join(sections) + "\n"


SHADOW_HEADING = "## Challenger vs production on live traffic (shadow)"
BAR_WIDTH = 30  # characters of the longest histogram bar


def shadow_section(found: Disagreement) -> str:
    """How the challenger priced the rows production served (serving.shadow): the summary, a
    text histogram of log(challenger/production), and the states that disagree most."""
    lines = [SHADOW_HEADING, found.sentence()]
    if not found.rows:
        lines.append(
            "Serving scores the `challenger` version next to production on a sample of "
            "`/predict` requests (`serving_shadow_share`); `tasador promote --challenger` "
            "writes this section again when it promotes a version that waited for them."
        )
        return "\n\n".join(lines)
    bins = found.histogram[found.histogram["rows"] > 0]
    peak = int(bins["rows"].max())
    bars = [
        f"{row.bin_start:+.2f} .. {row.bin_end:+.2f} | {row.rows:>7,} | "
        + "█" * max(1, round(BAR_WIDTH * row.rows / peak))
        for row in bins.itertuples()
    ]
    lines.append(
        "log(challenger / production), rows per bin (the outer bins hold everything beyond):\n\n"
        "```\n" + "\n".join(bars) + "\n```"
    )
    states = found.by_state.rename(
        columns={"within": f"share within ±{WITHIN:.0%}", "mean_abs_log_ratio": "mean |log ratio|"}
    )
    lines += ["Largest disagreements by state:", _markdown_table(states, digits=3)]
    return "\n\n".join(lines)


def with_shadow_section(report: str, section: str) -> str:
    """``report`` with its shadow section replaced by ``section`` (inserted before the outcome
    when it has none, appended when it has no outcome either)."""
    start = report.find(SHADOW_HEADING)
    if start >= 0:
        following = report.find("\n## ", start + len(SHADOW_HEADING))
        end = len(report) if following < 0 else following + 1
    else:
        start = end = report.find("## Outcome")
        if start < 0:
            return report.rstrip("\n") + "\n\n" + section + "\n"
    tail = report[end:]
    return report[:start] + section + ("\n\n" if tail else "\n") + tail


# --- the study in pictures (PNG artifacts under STUDY_DIR, shown in the report and the UI) ---


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _by_family(study: optuna.Study) -> dict[str, list[FrozenTrial]]:
    found: dict[str, list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        family = trial.params.get(spaces.FAMILY_PARAM)
        if family is not None and trial.value is not None:
            found.setdefault(family, []).append(trial)
    return found


def history_png(study: optuna.Study) -> bytes:
    """Optuna's optimisation history: every completed trial by family, and the best so far."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    for family, trials in sorted(_by_family(study).items()):
        values = [cast(float, t.value) for t in trials]  # completed: each has its value
        ax.scatter([t.number for t in trials], values, label=family, s=18)
    done = sorted((t for ts in _by_family(study).values() for t in ts), key=lambda t: t.number)
    if done:
        best = np.minimum.accumulate([cast(float, t.value) for t in done])
        ax.step([t.number for t in done], best, where="post", color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"CV {PRIMARY}")
    ax.set_title("Optimisation history")
    ax.legend(fontsize=7)
    return _png(fig)


def importances(study: optuna.Study) -> dict[str, dict[str, float]]:
    """Per family: fANOVA importance of its parameters (families with 3+ completed trials)."""
    out: dict[str, dict[str, float]] = {}
    for family, trials in _by_family(study).items():
        names = sorted({p for t in trials for p in t.params if p != spaces.FAMILY_PARAM})
        varied = [n for n in names if len({t.params.get(n) for t in trials}) > 1]
        if len(trials) < 3 or not varied:
            continue
        view = optuna.create_study(direction="minimize")
        view.add_trials(trials)
        try:
            found = optuna.importance.get_param_importances(view, params=varied)
        except (RuntimeError, ValueError):  # too few distinct trials to tell
            continue
        out[family] = {k.split(".", 1)[-1]: float(v) for k, v in found.items()}
    return out


def importance_png(found: dict[str, dict[str, float]]) -> bytes:
    """Parameter importance per family, one panel each."""
    panels = max(1, len(found))
    fig = Figure(figsize=(7, 1.2 + 1.6 * panels))
    axes = np.atleast_1d(fig.subplots(panels, 1))
    if not found:
        axes[0].text(0.5, 0.5, "too few trials per family", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, (family, values) in zip(axes, sorted(found.items()), strict=False):
        names = sorted(values, key=values.__getitem__)
        ax.barh(names, [values[n] for n in names])
        ax.set_title(f"{family}: parameter importance (fANOVA)", fontsize=9)
        ax.set_xlim(0, 1)
    return _png(fig)


def parallel_png(study: optuna.Study) -> bytes:
    """Parallel coordinates per family: each trial a line over its parameters (scaled to their
    range in the study), coloured by CV RMSLE (darker is better)."""
    families = _by_family(study)
    panels = max(1, len(families))
    fig = Figure(figsize=(8, 1.2 + 2.2 * panels))
    axes = np.atleast_1d(fig.subplots(panels, 1))
    values = [cast(float, t.value) for ts in families.values() for t in ts]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    cmap = matplotlib.colormaps["viridis"]
    for ax, (family, trials) in zip(axes, sorted(families.items()), strict=False):
        names = sorted({p for t in trials for p in t.params if p != spaces.FAMILY_PARAM})
        names.append(f"CV {PRIMARY}")  # the objective is the last axis
        table = pd.DataFrame(
            [{**{n: t.params.get(n) for n in names[:-1]}, names[-1]: t.value} for t in trials]
        )
        numeric = table.apply(pd.to_numeric, errors="coerce")
        span = (numeric.max() - numeric.min()).replace(0, 1)
        scaled = ((numeric - numeric.min()) / span).fillna(0.5)
        for (_, row), trial in zip(scaled.iterrows(), trials, strict=True):
            share = (cast(float, trial.value) - low) / ((high - low) or 1)
            ax.plot(range(len(names)), row.to_numpy(), "-o", color=cmap(share), alpha=0.8, ms=3)
        ax.set_xticks(range(len(names)), [n.split(".", 1)[-1] for n in names], fontsize=7)
        ax.set_yticks([0, 1], ["min", "max"])
        ax.set_title(f"{family}: {len(trials)} trials (colour: CV {PRIMARY})", fontsize=9)
    return _png(fig)


def study_figures(study: optuna.Study) -> dict[str, bytes]:
    """The three study pictures, by file name (``STUDY_FIGURES``)."""
    history, importance, parallel = STUDY_FIGURES
    return {
        history: history_png(study),
        importance: importance_png(importances(study)),
        parallel: parallel_png(study),
    }


def log_study_figures(mlflow_client: Any, run_ids: Sequence[str], study: optuna.Study) -> None:
    """The study pictures under ``STUDY_DIR`` of each run (the version's and the study's)."""
    figures = study_figures(study)
    with tempfile.TemporaryDirectory() as folder:
        for name, png in figures.items():
            (Path(folder) / name).write_bytes(png)
        for run_id in run_ids:
            mlflow_client.log_artifacts(run_id, folder, STUDY_DIR)


def log_report(
    mlflow_client: MlflowClient,
    settings: Settings,
    engine: sa.Engine,
    result: Any,  # experiments.champion.RetrainingResult (not imported: no cycle)
    plan: Any,  # experiments.study.StudyPlan
    study: optuna.Study,
    explanation: Explanation,
) -> str:
    """The report step of champion/challenger: the model-change report (Markdown), logged with
    the study's figures on the version's run and the study's run."""
    decision = (
        decisions_store.get_by_id(engine, plan.decision_id)
        if plan.decision_id is not None
        else None
    )
    production = result.production
    text = model_change_report(
        model_name=settings.mlflow.model_name,
        result=result,
        plan=plan,
        study=study,
        explanation=explanation,
        decision=decision,
        shadow=shadow_store.disagreement(
            db.engine("raw", settings.databases),
            settings.mlflow.model_name,
            str(result.challenger.version),
            str(production.version),
        )
        # Without a RAW database (a library caller) the report just has no live-traffic part.
        if production is not None and settings.databases.raw_db_url is not None
        else None,
    )
    log_study_figures(mlflow_client, (result.run_id, result.parent_run_id), study)
    for run in (result.run_id, result.parent_run_id):
        mlflow_client.log_text(run, text, REPORT_FILE)
    return text
