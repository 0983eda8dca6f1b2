"""Champion/challenger: refit the study's best trial, register it, promote it only if it wins.

:func:`finish_study` runs once per study, after the workers:

1. Refit the best trial's configuration on the training rows of the study's batches (all of
   them up to ``refit_sample_rows``, a reproducible sample beyond; the trials may have seen
   fewer) in a ``refit`` run nested under the study's parent run, and register it as a new
   version of ``settings.mlflow.model_name`` with its signature, an input example and the
   lineage tags (batch ids, data hash, study, retrain decision and reason).
2. Score it and the current ``@production`` version on the same shared holdout rows (the
   ``is_holdout`` rows of the study's batches in CLEAN, which no model trained on).
3. Promote when there is no production model yet, or when the challenger's holdout RMSLE is
   below the production model's by at least ``promotion_margin`` (relative: 0.01 means 1%
   better). The margin keeps the alias from flapping between equivalent models on noise.
   Promotion is one ``set_registered_model_alias`` call; every version stays registered.
   Reading production, comparing, moving the alias and writing the audit row happen under one
   advisory lock per model (:func:`challenge`, ``promotions.decide``): two trainings finishing
   together are decided one after the other, so the better model ends up serving.
   A challenger that prices any holdout row NaN or infinite is never promoted (its RMSLE is
   NaN); a production model whose output is not finite is beaten by any finite challenger.
   With ``promotion_min_shadow_rows`` set, a challenger that wins still waits for that many
   rows of live traffic scored next to production (experiments.shadow_gate).
4. Log the comparison table on the version's run and the study's parent run, record the
   decision in ``model_promotions`` (see experiments.promotions), explain the new model with
   SHAP against the previous production model, and write the model-change report.

Re-running it for the same study reuses the registered version and the stored decision.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from experiments import (
    data,
    explain,
    family_scores,
    leaderboard,
    promotions,
    registry,
    report,
    runs,
    shadow_gate,
    spaces,
)
from experiments.families import build_model
from experiments.features import model_input
from experiments.study import StudyPlan, load_study
from tasador.core import db, decisions_store, shadow_store, timings
from tasador.core.columns import TARGET
from tasador.core.config import Settings
from tasador.core.errors import Conflict, NotFound
from tasador.core.metrics import PRIMARY, regression_metrics
from tasador.core.names import (
    COMPARISON_FILE,
    HOLDOUT_PREFIX,
    HOLDOUT_PRIMARY,
    REPORT_FILE,
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


def best_trial(study: Any) -> FrozenTrial:
    """The completed trial with the lowest value; raises NotFound when none completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise NotFound(f"study {study.study_name} has no completed trial to refit")
    return cast(FrozenTrial, min(complete, key=lambda t: t.value))


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
    loaded: dict[int, tuple[Scored, Any]] = {}

    def production_of(number: int) -> tuple[Scored, Any]:
        if number not in loaded:
            found = mlflow_client.get_model_version(settings.mlflow.model_name, str(number))
            previous_model = registry.load_version(settings, number)
            tag = found.tags.get(registry.FAMILY_TAG, "?")
            loaded[number] = (
                score("production", number, tag, previous_model, holdout),
                previous_model,
            )
        return loaded[number]

    def judge() -> promotions.Judgement:
        current = registry.production_version(mlflow_client, settings)
        production = (
            production_of(int(current.version))[0]
            if current is not None and int(current.version) != version
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
            shadow_gate.waiting(settings, version, production.version)
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

    decision = promotions.get(engine, settings.mlflow.model_name, version) or promotions.decide(
        engine,
        model_name=settings.mlflow.model_name,
        challenger_version=version,
        margin=settings.promotion.promotion_margin,
        holdout_rows=len(holdout),
        study_name=study_name,
        retrain_decision_id=retrain_decision_id,
        judge=judge,
        move_alias=lambda: _promote(mlflow_client, settings, version, challenger),
        alias=settings.mlflow.production_alias,
    )
    previous = decision.previous_version
    if previous is None or previous == version:
        return Challenge(decision, challenger, None, None)
    production, previous_model = production_of(previous)
    return Challenge(decision, challenger, production, previous_model)


def _promote(
    mlflow_client: MlflowClient, settings: Settings, version: int, challenger: Scored
) -> None:
    """Log the challenger's holdout RMSLE on its run, then point the alias at it: serving
    validates a version against that figure as soon as it sees the alias move."""
    found = mlflow_client.get_model_version(settings.mlflow.model_name, str(version))
    if found.run_id:
        metric = {HOLDOUT_PRIMARY: challenger.metrics[PRIMARY]}
        runs.log(mlflow_client, found.run_id, metrics=metric)
    registry.set_production(mlflow_client, settings, version)


def _refit_run(mlflow_client: MlflowClient, plan: StudyPlan) -> str | None:
    found = mlflow_client.search_runs(
        [plan.experiment_id],
        filter_string=(
            f"tags.`{runs.KIND_TAG}` = 'refit' and tags.`{runs.STUDY_TAG}` = '{plan.study_name}'"
        ),
    )
    return found[0].info.run_id if found else None


def _challenger(
    settings: Settings,
    mlflow_client: MlflowClient,
    plan: StudyPlan,
    best: FrozenTrial,
    holdout: pd.DataFrame,
) -> tuple[Any, int, str]:
    """(pyfunc model, version number, run id): the registered refit, made now if missing."""
    run_id = _refit_run(mlflow_client, plan)
    if run_id is not None:
        existing = registry.versions_of_run(mlflow_client, settings, run_id)
        if existing:
            version = int(existing[0].version)
            return registry.load_version(settings, version), version, run_id
        runs.end(mlflow_client, run_id, "FAILED")  # a refit that died before registering

    family = best.params[spaces.FAMILY_PARAM]
    space = plan.search_spaces()[family]
    params, smoothing = space.from_trial(best.params)
    train = data.training_rows(settings, plan.batch_ids)
    if data.data_hash(train) != plan.data_hash:
        raise Conflict(f"CLEAN rows of batches {plan.batch_ids} changed since the study")
    # Past refit_sample_rows more rows cost minutes and no holdout RMSLE (docs/benchmarks.md).
    train = data.sample(train, settings.search.refit_sample_rows, plan.seed)
    extra = {} if smoothing is None else {"smoothing": smoothing}
    model = build_model(family, params, n_jobs=-1, seed=plan.seed, **extra)
    with timings.step("refit", rows=len(train)):  # benchmarks/loop.py times it
        model.fit(train.drop(columns=[TARGET]), data.target(train))

    tags = {
        **plan.lineage_tags(),
        runs.KIND_TAG: "refit",
        runs.TRIAL_TAG: str(best.number),
        registry.FAMILY_TAG: family,
    }
    run_id = runs.create_run(
        mlflow_client, plan.experiment_id, f"refit-{family}", tags, plan.parent_run_id
    )
    assert best.value is not None  # best_trial picks among completed trials
    logged = {spaces.FAMILY_PARAM: family, **params, **extra, "training_rows": len(train)}
    runs.log(mlflow_client, run_id, params=logged, metrics={f"cv_{PRIMARY}": best.value})
    version_tags = {
        **tags,
        registry.PARAMS_TAG: json.dumps(best.params, sort_keys=True),
        f"cv_{PRIMARY}": f"{best.value:.6f}",
    }
    example = train.drop(columns=[TARGET]).head(5)
    background = explain.background_rows(train, plan.seed)  # SHAP's reference, kept with it
    # Serving scores these before the version answers (serving.validation).
    validation = data.sample(holdout, registry.VALIDATION_ROWS, plan.seed)
    registered = registry.log_and_register(
        model, example, settings, run_id, version_tags, background, validation
    )
    return registry.load_version(settings, registered.version), int(registered.version), run_id


@timings.step("champion_challenger")  # benchmarks/loop.py times it
def finish_study(study_name: str, settings: Settings) -> RetrainingResult:
    """Refit, register, compare with production on the shared holdout, maybe promote."""
    study, plan = load_study(study_name, settings)
    mlflow_client = registry.connect(settings)
    best = best_trial(study)
    holdout = data.holdout_rows(settings, plan.batch_ids)
    model, version, run_id = _challenger(settings, mlflow_client, plan, best, holdout)
    family = best.params[spaces.FAMILY_PARAM]
    engine = db.engine("clean", settings.databases)

    faced = challenge(
        settings,
        mlflow_client,
        engine,
        version=version,
        family=family,
        model=model,
        holdout=holdout,
        study_name=plan.study_name,
        retrain_decision_id=plan.decision_id,
    )
    decision, challenger, production = faced.decision, faced.challenger, faced.production
    result = RetrainingResult(
        study_name=plan.study_name,
        model_name=settings.mlflow.model_name,
        challenger=challenger,
        production=production,
        promoted=decision.promoted,
        summary=decision.summary,
        run_id=run_id,
        parent_run_id=plan.parent_run_id,
        holdout_rows=len(holdout),
    )
    _log_outcome(mlflow_client, settings, result, decision)
    # Every family's best trial on the same holdout, for the leaderboard across retrains.
    family_scores.score_family_bests(
        settings, mlflow_client, study, plan, holdout, best.number, challenger.metrics
    )
    candidate = (
        functools.partial(  # the MLflow leaderboard and model card (experiments.leaderboard)
            leaderboard.record_candidate, mlflow_client, settings, engine, result=result, plan=plan
        )
    )
    holdout_hash = data.data_hash(holdout)
    if not challenger.finite:
        # SHAP of a model whose output is not finite explains nothing; the verdict says why.
        candidate(holdout_hash=holdout_hash, drivers=None)
        return result

    # A broken production model is not explained either: the new model is explained alone.
    previous_model = faced.production_model if production and production.finite else None
    explanation = explain.explain_change(
        _explained(mlflow_client, settings, model, version),
        _explained(mlflow_client, settings, previous_model, production.version)
        if previous_model is not None and production
        else None,
        data.sample(holdout, settings.search.shap_sample_rows, plan.seed),
        production.version if previous_model is not None and production else None,
        title=f"{settings.mlflow.model_name} v{version}: mean |SHAP| per input column",
    )
    _log_explanation(mlflow_client, settings, result, explanation)
    candidate(holdout_hash=holdout_hash, drivers=explanation.diff)
    record = (
        decisions_store.get_by_id(engine, plan.decision_id)
        if plan.decision_id is not None
        else None
    )
    result = dataclasses.replace(result, shap_sentence=explanation.sentence)
    text = report.model_change_report(
        model_name=settings.mlflow.model_name,
        result=result,
        plan=plan,
        study=study,
        explanation=explanation,
        decision=record,
        shadow=shadow_store.disagreement(
            db.engine("raw", settings.databases),
            settings.mlflow.model_name,
            str(version),
            str(production.version),
        )
        # Without a RAW database (a library caller) the report just has no live-traffic part.
        if production is not None and settings.databases.raw_db_url is not None
        else None,
    )
    report.log_study_figures(mlflow_client, (result.run_id, result.parent_run_id), study)
    for run in (result.run_id, result.parent_run_id):
        mlflow_client.log_text(run, text, REPORT_FILE)
    return dataclasses.replace(result, report=text)


def _explained(
    mlflow_client: MlflowClient, settings: Settings, model: Any, version: int
) -> explain.Explained:
    """A registered version with the SHAP background stored with it."""
    found = mlflow_client.get_model_version(settings.mlflow.model_name, str(version))
    return explain.Explained(model, registry.load_background(mlflow_client, found))


def _log_explanation(
    mlflow_client: MlflowClient,
    settings: Settings,
    result: RetrainingResult,
    explanation: explain.Explanation,
) -> None:
    """Table, plot and sentence under ``shap/`` of the version's run; the sentence as a tag."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / SHAP_DIR
        out.mkdir()
        explanation.diff.to_csv(out / SHAP_TABLE, index=False)
        (out / SHAP_PLOT).write_bytes(explanation.png)
        (out / SHAP_SENTENCE).write_text(explanation.sentence + "\n")
        mlflow_client.log_artifacts(result.run_id, str(out), SHAP_DIR)
    mlflow_client.set_model_version_tag(
        settings.mlflow.model_name,
        str(result.challenger.version),
        registry.SHAP_SUMMARY_TAG,
        explanation.sentence,
    )


def _log_outcome(
    mlflow_client: MlflowClient,
    settings: Settings,
    result: RetrainingResult,
    decision: promotions.Promotion,
) -> None:
    holdout = {f"{HOLDOUT_PREFIX}{k}": v for k, v in result.challenger.metrics.items()}
    runs.log(
        mlflow_client, result.run_id, metrics=holdout, tags={registry.PROMOTED_TAG: result.promoted}
    )
    table = result.comparison()
    for run_id in (result.run_id, result.parent_run_id):
        mlflow_client.log_table(run_id, table, COMPARISON_FILE)
    version = str(result.challenger.version)
    for key, value in {
        registry.PROMOTED_TAG: result.promoted,
        registry.DECIDED_AT_TAG: decision.decided_at.isoformat(),
        registry.PROMOTION_VERDICT_TAG: result.summary,
    }.items():
        mlflow_client.set_model_version_tag(settings.mlflow.model_name, version, key, str(value))
    runs.log(
        mlflow_client,
        result.parent_run_id,
        metrics=holdout,  # the challenger's: same names as on its run and logged model
        tags={registry.PROMOTED_TAG: result.promoted, "model_version": version},
    )
    runs.end(mlflow_client, result.run_id)
    runs.end(mlflow_client, result.parent_run_id)
