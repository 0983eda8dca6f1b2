"""Champion/challenger: refit the study's best trial, register it, promote it only if it wins.

:func:`finish_study` runs once per study, after the workers, as named steps, each a function
that can be called alone:

1. **Refit and register** (experiments.refit): the best trial's configuration, fitted on the
   training rows of the study's batches and registered as a new version of
   ``settings.mlflow.model_name`` with its lineage tags.
2. **Challenge** (:func:`challenge`): score it and the current ``@production`` version on the
   same shared holdout rows (the ``is_holdout`` rows of the study's batches in CLEAN, which no
   model trained on). Promote when there is no production model yet, or when the challenger's
   holdout RMSLE is below the production model's by at least ``promotion_margin`` (relative:
   0.01 means 1% better). The margin keeps the alias from flapping between equivalent models on
   noise. Promotion is one ``set_registered_model_alias`` call; every version stays registered.
   Reading production, comparing, moving the alias and writing the audit row happen under one
   advisory lock per model (``promotions.decide``): two trainings finishing together are
   decided one after the other, so the better model ends up serving. A challenger that prices
   any holdout row NaN or infinite is never promoted (its RMSLE is NaN); a production model
   whose output is not finite is beaten by any finite challenger. With
   ``promotion_min_shadow_rows`` set, a challenger that wins still waits for that many rows of
   live traffic scored next to production (experiments.shadow_gate). :func:`record_outcome`
   logs the comparison table on the version's run and the study's parent run; the decision is
   in ``model_promotions`` (see experiments.promotions).
3. **Score families** (experiments.family_scores): every family's best trial on the same
   holdout, for the leaderboard across retrains.
4. **Explain** (:func:`explain_challenger`): SHAP of the new model against the previous
   production model; then the leaderboard entry and model card (experiments.leaderboard).
5. **Report** (``report.log_report``): the model-change report.

Re-running it for the same study reuses the registered version and the stored decision.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient

from experiments import (
    data,
    explain,
    family_scores,
    leaderboard,
    promotions,
    refit,
    registry,
    report,
    runs,
    shadow_gate,
)
from experiments.inputs import model_input
from experiments.study import StudyPlan, load_study
from tasador.core import db, timings
from tasador.core.columns import TARGET
from tasador.core.config import MlflowSettings, Settings
from tasador.core.metrics import PRIMARY, regression_metrics
from tasador.core.names import (
    COMPARISON_FILE,
    HOLDOUT_PREFIX,
    HOLDOUT_PRIMARY,
    SHAP_DIR,
    SHAP_PLOT,
    SHAP_SENTENCE,
    SHAP_TABLE,
)


@dataclass(frozen=True)
class Scored:
    """One model version's holdout metrics, as challenger or production."""

    role: str  # "challenger" or "production"
    version: int
    family: str
    metrics: dict[str, float]  # the RMSLE is NaN when any prediction is not finite
    non_finite: int = 0  # holdout rows the model priced NaN or infinite

    @property
    def finite(self) -> bool:
        """Every holdout prediction was a finite number."""
        return self.non_finite == 0 and math.isfinite(self.metrics[PRIMARY])


@dataclass(frozen=True)
class RetrainingResult:
    """The outcome of a retraining: both models' scores, the promotion verdict and the runs."""

    study_name: str
    model_name: str
    challenger: Scored
    production: Scored | None  # the production model before the decision
    promoted: bool
    summary: str
    run_id: str  # the challenger version's run (model, comparison, SHAP, report)
    parent_run_id: str
    holdout_rows: int
    shap_sentence: str = ""
    report: str = ""  # the model-change report (Markdown)

    def comparison(self) -> pd.DataFrame:
        rows = [self.challenger, *([self.production] if self.production else [])]
        return pd.DataFrame(
            [{"role": s.role, "version": s.version, "family": s.family, **s.metrics} for s in rows]
        )


def summarize(challenger: Scored, production: Scored | None, promoted: bool, margin: float) -> str:
    """One sentence on whether the challenger was promoted, with both RMSLEs and the gain."""
    c = challenger.metrics[PRIMARY]
    if not challenger.finite:
        keeps = (
            f"production stays version {production.version}"
            if production is not None
            else "nothing serves yet"
        )
        return (
            f"Version {challenger.version} not promoted: it priced "
            f"{challenger.non_finite:,} holdout rows NaN or infinite, and a model whose output "
            f"is not finite is never promoted ({keeps})."
        )
    if production is None:
        return f"Version {challenger.version} promoted: no production model yet (RMSLE {c:.4f})."
    if not production.finite:
        return (
            f"Version {challenger.version} promoted: holdout RMSLE {c:.4f}, while production "
            f"version {production.version} priced {production.non_finite:,} holdout rows NaN "
            "or infinite, so any finite challenger beats it."
        )
    p = production.metrics[PRIMARY]
    gain = (p - c) / p if p else 0.0
    verdict = "promoted" if promoted else "not promoted"
    return (
        f"Version {challenger.version} {verdict}: holdout RMSLE {c:.4f} vs {p:.4f} for "
        f"production version {production.version} ({gain:+.1%} improvement; "
        f"required {margin:.1%})."
    )


def score(role: str, version: int, family: str, model: Any, holdout: pd.DataFrame) -> Scored:
    """A model's metrics on the holdout rows, with how many rows it priced non-finite."""
    predictions = np.asarray(model.predict(model_input(holdout)), dtype=float).reshape(-1)
    non_finite = int((~np.isfinite(predictions)).sum())
    metrics = regression_metrics(holdout[TARGET], predictions)
    if non_finite:
        # rmsle clips -inf to zero: a broken model must not get a finite score from it.
        metrics[PRIMARY] = math.nan
    return Scored(role, version, family, metrics, non_finite)


@dataclass(frozen=True)
class Challenge:
    """A champion/challenger decision: the stored verdict and both models as they were."""

    decision: promotions.Promotion
    challenger: Scored
    production: Scored | None  # the production model before the decision
    production_model: Any | None  # that model, loaded (None when nothing served)


def challenge(
    settings: Settings,
    mlflow_client: MlflowClient,
    engine: sa.Engine,
    *,
    version: int,
    family: str,
    model: Any,
    holdout: pd.DataFrame,
    study_name: str,
    retrain_decision_id: int | None,
) -> Challenge:
    """Face registered version ``version`` (loaded as ``model``) with production on ``holdout``.

    Compare-and-set: the production version is read, scored and compared, the alias moved and
    the audit row written while holding the model's promotion lock (``promotions.decide``), so
    concurrent challenges are decided one at a time against the production each one really
    faced. A version already decided keeps its stored verdict."""
    challenger = score("challenger", version, family, model, holdout)
    productions = _Productions(settings, mlflow_client, holdout)
    decision = promotions.get(engine, settings.mlflow.model_name, version) or promotions.decide(
        engine,
        model_name=settings.mlflow.model_name,
        challenger_version=version,
        margin=settings.promotion.promotion_margin,
        holdout_rows=len(holdout),
        study_name=study_name,
        retrain_decision_id=retrain_decision_id,
        judge=lambda: _judge(settings, mlflow_client, challenger, productions),
        move_alias=lambda: _promote(mlflow_client, settings.mlflow, version, challenger),
        alias=settings.mlflow.production_alias,
    )
    previous = decision.previous_version
    if previous is None or previous == version:
        return Challenge(decision, challenger, None, None)
    production, previous_model = productions(previous)
    return Challenge(decision, challenger, production, previous_model)


class _Productions:
    """Production versions scored on the holdout, each loaded once: the judge scores the one
    it finds under the lock, and the challenge reports that one again afterwards."""

    def __init__(
        self, settings: Settings, mlflow_client: MlflowClient, holdout: pd.DataFrame
    ) -> None:
        self.settings = settings
        self.mlflow_client = mlflow_client
        self.holdout = holdout
        self.loaded: dict[int, tuple[Scored, Any]] = {}

    def __call__(self, number: int) -> tuple[Scored, Any]:
        """Version ``number``'s holdout scores and its loaded model."""
        if number not in self.loaded:
            found = self.mlflow_client.get_model_version(
                self.settings.mlflow.model_name, str(number)
            )
            model = registry.load_version(self.settings.mlflow, number)
            family = found.tags.get(registry.FAMILY_TAG, "?")
            self.loaded[number] = (score("production", number, family, model, self.holdout), model)
        return self.loaded[number]


def _judge(
    settings: Settings,
    mlflow_client: MlflowClient,
    challenger: Scored,
    productions: _Productions,
) -> promotions.Judgement:
    """The verdict on ``challenger`` against the production version of this moment (called
    under the promotion lock)."""
    current = registry.production_version(mlflow_client, settings)
    production = (
        productions(int(current.version))[0]
        if current is not None and int(current.version) != challenger.version
        else None
    )
    promoted = promotions.wins(
        challenger.metrics[PRIMARY],
        production.metrics[PRIMARY] if production else None,
        settings.promotion.promotion_margin,
    )
    summary = summarize(challenger, production, promoted, settings.promotion.promotion_margin)
    # Winning on the holdout may not be enough: live traffic may be required too.
    waiting = (
        shadow_gate.waiting(settings, challenger.version, production.version)
        if (promoted and production is not None)
        else None
    )
    if waiting is not None:
        promoted, summary = False, shadow_gate.waiting_summary(summary, waiting)
    return promotions.Judgement(
        previous_version=production.version if production else None,
        promoted=promoted,
        challenger_rmsle=challenger.metrics[PRIMARY],
        previous_rmsle=production.metrics[PRIMARY] if production else None,
        summary=summary,
    )


def _promote(
    mlflow_client: MlflowClient, mlflow: MlflowSettings, version: int, challenger: Scored
) -> None:
    """Log the challenger's holdout RMSLE on its run, then point the alias at it: serving
    validates a version against that figure as soon as it sees the alias move."""
    found = mlflow_client.get_model_version(mlflow.model_name, str(version))
    if found.run_id:
        metric = {HOLDOUT_PRIMARY: challenger.metrics[PRIMARY]}
        runs.log(mlflow_client, found.run_id, metrics=metric)
    registry.set_production(mlflow_client, mlflow, version)


@timings.step("champion_challenger")  # benchmarks/loop.py times it
def finish_study(study_name: str, settings: Settings) -> RetrainingResult:
    """Refit, register, compare with production on the shared holdout, maybe promote; then
    score every family's best trial, explain the change and report it: the steps of the
    module's docstring, in order."""
    study, plan = load_study(study_name, settings)
    mlflow_client = registry.connect(settings)
    best = refit.best_trial(study)
    holdout = data.holdout_rows(settings, plan.batch_ids)
    registered = refit.refit_and_register(settings, mlflow_client, plan, best, holdout)
    engine = db.engine("clean", settings.databases)
    faced = challenge(
        settings,
        mlflow_client,
        engine,
        version=registered.version,
        family=registered.family,
        model=registered.model,
        holdout=holdout,
        study_name=plan.study_name,
        retrain_decision_id=plan.decision_id,
    )
    result = record_outcome(
        mlflow_client, settings.mlflow, plan, registered.run_id, faced, len(holdout)
    )
    # Every family's best trial on the same holdout, for the leaderboard across retrains.
    family_scores.score_family_bests(
        settings, mlflow_client, study, plan, holdout, best.number, result.challenger.metrics
    )
    explanation = explain_challenger(mlflow_client, settings, plan, registered, faced, holdout)
    leaderboard.record_candidate(  # the MLflow leaderboard and model card
        mlflow_client,
        settings.mlflow,
        engine,
        result=result,
        plan=plan,
        holdout_hash=data.data_hash(holdout),
        drivers=None if explanation is None else explanation.diff,
    )
    if explanation is None:
        return result  # output not finite: no SHAP, no report; the verdict says why
    result = dataclasses.replace(result, shap_sentence=explanation.sentence)
    text = report.log_report(mlflow_client, settings, engine, result, plan, study, explanation)
    return dataclasses.replace(result, report=text)


def record_outcome(
    mlflow_client: MlflowClient,
    mlflow: MlflowSettings,
    plan: StudyPlan,
    run_id: str,
    faced: Challenge,
    holdout_rows: int,
) -> RetrainingResult:
    """The retraining's result, logged: the challenger's holdout metrics and the comparison on
    its run (``run_id``) and the study's, the verdict as version tags; both runs end."""
    result = RetrainingResult(
        study_name=plan.study_name,
        model_name=mlflow.model_name,
        challenger=faced.challenger,
        production=faced.production,
        promoted=faced.decision.promoted,
        summary=faced.decision.summary,
        run_id=run_id,
        parent_run_id=plan.parent_run_id,
        holdout_rows=holdout_rows,
    )
    holdout = {f"{HOLDOUT_PREFIX}{k}": v for k, v in result.challenger.metrics.items()}
    runs.log(mlflow_client, run_id, metrics=holdout, tags={registry.PROMOTED_TAG: result.promoted})
    table = result.comparison()
    for run in (run_id, plan.parent_run_id):
        mlflow_client.log_table(run, table, COMPARISON_FILE)
    version = str(result.challenger.version)
    for key, value in {
        registry.PROMOTED_TAG: result.promoted,
        registry.DECIDED_AT_TAG: faced.decision.decided_at.isoformat(),
        registry.PROMOTION_VERDICT_TAG: result.summary,
    }.items():
        mlflow_client.set_model_version_tag(mlflow.model_name, version, key, str(value))
    runs.log(
        mlflow_client,
        plan.parent_run_id,
        metrics=holdout,  # the challenger's: same names as on its run and logged model
        tags={registry.PROMOTED_TAG: result.promoted, "model_version": version},
    )
    runs.end(mlflow_client, run_id)
    runs.end(mlflow_client, plan.parent_run_id)
    return result


def explain_challenger(
    mlflow_client: MlflowClient,
    settings: Settings,
    plan: StudyPlan,
    registered: refit.Refit,
    faced: Challenge,
    holdout: pd.DataFrame,
) -> explain.Explanation | None:
    """SHAP of the challenger against the production model it faced, logged under ``shap/`` of
    its run (table, plot, sentence) and as a version tag; None, and nothing logged, when the
    challenger's output is not finite: its SHAP would explain nothing."""
    if not faced.challenger.finite:
        return None
    # A broken production model is not explained either: the new model is explained alone.
    production = faced.production
    previous = (
        production
        if production is not None and production.finite and faced.production_model is not None
        else None
    )
    explanation = explain.explain_change(
        _explained(mlflow_client, settings.mlflow, registered.model, registered.version),
        None
        if previous is None
        else _explained(mlflow_client, settings.mlflow, faced.production_model, previous.version),
        data.sample(holdout, settings.search.shap_sample_rows, plan.seed),
        None if previous is None else previous.version,
        title=f"{settings.mlflow.model_name} v{registered.version}: mean |SHAP| per input column",
    )
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / SHAP_DIR
        out.mkdir()
        explanation.diff.to_csv(out / SHAP_TABLE, index=False)
        (out / SHAP_PLOT).write_bytes(explanation.png)
        (out / SHAP_SENTENCE).write_text(explanation.sentence + "\n")
        mlflow_client.log_artifacts(registered.run_id, str(out), SHAP_DIR)
    mlflow_client.set_model_version_tag(
        settings.mlflow.model_name,
        str(registered.version),
        registry.SHAP_SUMMARY_TAG,
        explanation.sentence,
    )
    return explanation


def _explained(
    mlflow_client: MlflowClient, mlflow: MlflowSettings, model: Any, version: int
) -> explain.Explained:
    """A registered version with the SHAP background stored with it."""
    found = mlflow_client.get_model_version(mlflow.model_name, str(version))
    return explain.Explained(model, registry.load_background(mlflow_client, found))
