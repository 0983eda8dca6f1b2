"""The model-change report: one Markdown page per retraining, logged as an MLflow artifact.

It answers, in order: why the platform retrained (the decision record), what the search found
(best trial per family), how the challenger and the production model scored on the shared
holdout, what changed in the model's reasoning (SHAP), and whether the alias moved.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import optuna
import pandas as pd
from optuna.trial import TrialState

from experiments import spaces
from experiments.explain import Explanation
from tasador.core.decisions_store import Decision
from tasador.core.metrics import PRIMARY
from tasador.core.names import SHAP_DIR, SHAP_PLOT


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
) -> str:
    """The Markdown report of a retraining: why, what the search found, the verdict."""
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
