"""The challenger: the study's best trial refitted on the training rows and registered.

The trials scored their configurations by cross-validation on a sample; the challenger is the
best one fitted again on the training rows of the study's batches (all of them up to
``refit_sample_rows``, a reproducible sample beyond) in a ``refit`` run nested under the study's
parent run, and registered as a new version of ``settings.mlflow.model_name`` with its signature, an
input example, the SHAP background, the validation rows serving checks it on, and the lineage
tags (batch ids, data hash, study, retrain decision and reason). Its price ranges are calibrated
on out-of-fold residuals of the same configuration (experiments.calibration), stored in its
scoring artifact, and their coverage on the shared holdout logged as ``range_coverage_*`` metrics.

:func:`refit_and_register` runs once per study: called again, it finds the version its refit
run registered and loads it instead of fitting again (a refit that died before registering is
closed as FAILED and done again).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from experiments import calibration, data, explain, registry, runs, spaces
from experiments.families import build_model
from experiments.study import StudyPlan
from tasador.core import timings
from tasador.core.columns import TARGET
from tasador.core.config import Settings
from tasador.core.errors import Conflict, NotFound
from tasador.core.metrics import PRIMARY

TRAINING_ROWS_PARAM = "training_rows"  # on the refit run: the rows it was fitted on


@dataclass(frozen=True)
class Refit:
    """The registered challenger: its model (loaded as serving loads it), version and run."""

    model: Any  # the pyfunc model
    version: int
    run_id: str
    family: str


def best_trial(study: Any) -> FrozenTrial:
    """The completed trial with the lowest value; raises NotFound when none completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise NotFound(f"study {study.study_name} has no completed trial to refit")
    return cast(FrozenTrial, min(complete, key=lambda t: t.value))


def _refit_run(mlflow_client: MlflowClient, plan: StudyPlan) -> str | None:
    found = mlflow_client.search_runs(
        [plan.experiment_id],
        filter_string=(
            f"tags.`{runs.KIND_TAG}` = 'refit' and tags.`{runs.STUDY_TAG}` = '{plan.study_name}'"
        ),
    )
    return found[0].info.run_id if found else None


def fit_trial(
    plan: StudyPlan, trial_params: Mapping[str, Any], train: pd.DataFrame
) -> tuple[Any, dict[str, Any]]:
    """A trial's configuration (its Optuna params) built from the plan's search space and seed
    and fitted on ``train``: the model, and the parameters it was built with."""
    family = trial_params[spaces.FAMILY_PARAM]
    params, smoothing = plan.search_spaces()[family].from_trial(trial_params)
    extra = {} if smoothing is None else {"smoothing": smoothing}
    model = build_model(family, params, n_jobs=-1, seed=plan.seed, **extra)
    model.fit(train.drop(columns=[TARGET]), data.target(train))
    return model, {spaces.FAMILY_PARAM: family, **params, **extra}


def refit_and_register(
    settings: Settings,
    mlflow_client: MlflowClient,
    plan: StudyPlan,
    best: FrozenTrial,
    holdout: pd.DataFrame,
) -> Refit:
    """The registered refit of ``best``, made now if the study has none yet."""
    family = best.params[spaces.FAMILY_PARAM]
    run_id = _refit_run(mlflow_client, plan)
    if run_id is not None:
        existing = registry.versions_of_run(mlflow_client, settings.mlflow, run_id)
        if existing:
            version = int(existing[0].version)
            return Refit(registry.load_version(settings.mlflow, version), version, run_id, family)
        runs.end(mlflow_client, run_id, "FAILED")  # a refit that died before registering

    train = data.training_rows(settings, plan.batch_ids)
    if data.data_hash(train) != plan.data_hash:
        raise Conflict(f"CLEAN rows of batches {plan.batch_ids} changed since the study")
    # Past refit_sample_rows more rows cost minutes and no holdout RMSLE (docs/benchmarks.md).
    train = data.sample(train, settings.search.refit_sample_rows, plan.seed)
    with timings.step("refit", rows=len(train)):  # benchmarks/loop.py times it
        model, fitted = fit_trial(plan, best.params, train)
    # On training rows only: the holdout measures the ranges, it does not make them.
    ranges = calibration.price_ranges(model, train, holdout, settings.search.range_folds, plan.seed)

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
    logged = {**fitted, TRAINING_ROWS_PARAM: len(train)}
    measured = {} if ranges is None else calibration.metrics(ranges)
    runs.log(
        mlflow_client, run_id, params=logged, metrics={f"cv_{PRIMARY}": best.value, **measured}
    )
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
        model, example, settings.mlflow, run_id, version_tags, background, validation, ranges
    )
    version = int(registered.version)
    return Refit(registry.load_version(settings.mlflow, version), version, run_id, family)
