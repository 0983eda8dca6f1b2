"""Every family's best trial on the shared holdout, for the leaderboard across retrains.

Trials are scored by cross-validation only; the leaderboard compares families on the same
shared holdout rows as the challenger and the production model. After champion/challenger,
:func:`score_family_bests` refits the best completed trial of each family on the search sample
(the rows the trials saw, so it costs about one trial per family) and logs its holdout metrics
on that trial's MLflow run under the usual ``holdout_*`` names. The challenger's own trial gets
the registered refit's figures instead, so one trial never carries two holdout scores. Runs that
already carry them are skipped: re-running a study's finish adds nothing.
"""

from __future__ import annotations

import optuna
import pandas as pd
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from experiments import data, runs, spaces
from experiments.families import build_model
from experiments.study import RUN_ID_ATTR, StudyPlan
from tasador.core.columns import TARGET
from tasador.core.config import Settings
from tasador.core.metrics import PRIMARY, regression_metrics
from tasador.core.names import HOLDOUT_PREFIX, HOLDOUT_PRIMARY


def family_bests(study: optuna.Study) -> dict[str, FrozenTrial]:
    """The completed trial with the lowest CV RMSLE, per family."""
    best: dict[str, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        family = trial.params.get(spaces.FAMILY_PARAM)
        if family is None or trial.value is None:
            continue
        if family not in best or trial.value < (best[family].value or float("inf")):
            best[family] = trial
    return best


def score_family_bests(
    settings: Settings,
    mlflow_client: MlflowClient,
    study: optuna.Study,
    plan: StudyPlan,
    holdout: pd.DataFrame,
    challenger_trial: int,
    challenger_metrics: dict[str, float],
) -> dict[str, float]:
    """Holdout RMSLE of each family's best trial, logged on its run; family -> RMSLE."""
    bests = family_bests(study)
    scores: dict[str, float] = {}
    train: pd.DataFrame | None = None
    for family, trial in sorted(bests.items()):
        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        if run_id is None:
            continue
        logged = mlflow_client.get_run(run_id).data.metrics
        if HOLDOUT_PRIMARY in logged:
            scores[family] = logged[HOLDOUT_PRIMARY]
            continue
        if trial.number == challenger_trial:
            metrics = challenger_metrics
        else:
            if train is None:
                rows = data.training_rows(settings, plan.batch_ids)
                train = data.sample(rows, settings.search.search_sample_rows, plan.seed)
            params, smoothing = plan.search_spaces()[family].from_trial(trial.params)
            extra = {} if smoothing is None else {"smoothing": smoothing}
            model = build_model(family, params, n_jobs=-1, seed=plan.seed, **extra)
            model.fit(train.drop(columns=[TARGET]), data.target(train))
            metrics = regression_metrics(
                holdout[TARGET], model.predict(holdout.drop(columns=[TARGET]))
            )
        runs.log(
            mlflow_client,
            run_id,
            metrics={f"{HOLDOUT_PREFIX}{k}": v for k, v in metrics.items()},
        )
        scores[family] = metrics[PRIMARY]
    return scores
