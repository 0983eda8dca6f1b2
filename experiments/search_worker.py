"""What each search worker runs: trials of one study until its budgets are spent.

:func:`run_worker` is the unit of work, a local process (``tasador search --workers N``,
:func:`run_workers`) or an Airflow mapped task: it needs only the study name, reads the plan
back (experiments.study), checks that CLEAN still holds the very rows the plan was made from,
and runs trials until the study's trial budget or wall-clock budget is spent.

**Trials.** A trial samples a family (``family`` is a categorical of the study), then that
family's hyperparameters, and scores the model with K-fold cross-validation on the training
rows (a reproducible subset of at most ``search_sample_rows``). After each fold it reports the
running out-of-fold RMSLE; the ``MedianPruner`` stops trials whose partial score is worse than
the median of earlier trials at the same fold, so weak configurations (often a whole family)
cost one fold instead of K. Folds rather than boosting rounds are the pruning steps because
they exist for every family.

**Budgets.** A study stops at ``n_trials`` finished trials or when its wall-clock budget
(``search_timeout_s``, or the caller's) has passed since its first trial, whichever comes first,
counted over every worker; a worker starts no trial past either, so each overruns by at most the
trial each worker is running. A trial's fits run in a child process (experiments.trial_process)
killed at ``search_trial_timeout_s``: the trial is recorded PRUNED with the user attribute
``stopped: time limit`` (it spent budget) and its MLflow run ends KILLED with the same tag.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.study import MaxTrialsCallback
from sklearn.model_selection import KFold

from experiments import data, registry, runs, spaces, trial_process
from experiments.study import (
    COUNTED_STATES,
    RUN_ID_ATTR,
    WORKER_ATTR,
    WORKER_INDEX_ATTR,
    StudyPlan,
    counted_trials,
    load_study,
    log_to_file,
    seconds_left,
)
from tasador.core import timings
from tasador.core.columns import TARGET
from tasador.core.config import Settings
from tasador.core.errors import Conflict
from tasador.core.metrics import PRIMARY, regression_metrics, rmsle

STOPPED_ATTR = "stopped"  # user attr (and MLflow tag) of a trial stopped at its time limit
STOPPED_TIME_LIMIT = "time limit"
# The running out-of-fold RMSLE after each fold, what pruning looks at, has a name of its own
# (the metric names of every kind of run: experiments.study).
RUNNING_CV = f"cv_{PRIMARY}_running"
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial (WORKER_ATTR)


class _Objective:
    """Cross-validates one sampled configuration, logging it as a child run of the study."""

    def __init__(
        self, plan: StudyPlan, rows: pd.DataFrame, settings: Settings, worker: int | None
    ) -> None:
        self.plan = plan
        self.worker = worker
        self.spaces = plan.search_spaces()
        self.X = rows.drop(columns=[TARGET])
        self.y = data.target(rows)
        self.folds = list(KFold(plan.cv_folds, shuffle=True, random_state=plan.seed).split(self.X))
        self.n_jobs = settings.search.search_threads
        self.trial_limit_s = settings.search.search_trial_timeout_s
        self.client = registry.connect(settings)
        self.finished = 0

    def __call__(self, trial: optuna.Trial) -> float:
        family, params, smoothing = spaces.suggest(trial, self.spaces)
        run_id = runs.create_run(
            self.client,
            self.plan.experiment_id,
            f"trial-{trial.number:03d}-{family}",
            {
                **self.plan.lineage_tags(),
                runs.KIND_TAG: "trial",
                runs.TRIAL_TAG: str(trial.number),
                registry.FAMILY_TAG: family,
            },
            parent_run_id=self.plan.parent_run_id,
        )
        trial.set_user_attr(RUN_ID_ATTR, run_id)
        trial.set_user_attr(WORKER_ATTR, WORKER)
        if self.worker is not None:
            trial.set_user_attr(WORKER_INDEX_ATTR, self.worker)
        logged = {spaces.FAMILY_PARAM: family, **params}
        if smoothing is not None:
            logged["smoothing"] = smoothing
        runs.log(self.client, run_id, params=logged)
        try:
            value = self._cross_validate(trial, run_id, family, params, smoothing)
        except trial_process.TrialTimeLimit as exc:
            # Counted like a pruned trial: it spent budget, and its finished folds still inform
            # the sampler; the attribute and the run's tags say why it stopped.
            trial.set_user_attr(STOPPED_ATTR, STOPPED_TIME_LIMIT)
            tags = {runs.STATE_TAG: "PRUNED", STOPPED_ATTR: STOPPED_TIME_LIMIT}
            runs.log(self.client, run_id, tags={**tags, "error": str(exc)})
            runs.end(self.client, run_id, "KILLED")
            self.finished += 1
            raise optuna.TrialPruned(str(exc)) from None
        except optuna.TrialPruned:
            runs.log(self.client, run_id, tags={runs.STATE_TAG: "PRUNED"})
            runs.end(self.client, run_id, "KILLED")
            self.finished += 1
            raise
        except Exception as exc:
            runs.log(self.client, run_id, tags={runs.STATE_TAG: "FAIL", "error": repr(exc)[:500]})
            runs.end(self.client, run_id, "FAILED")
            raise
        runs.log(self.client, run_id, tags={runs.STATE_TAG: "COMPLETE"})
        runs.end(self.client, run_id)
        self.finished += 1
        return value

    def _cross_validate(
        self,
        trial: optuna.Trial,
        run_id: str,
        family: str,
        params: dict[str, Any],
        smoothing: float | None,
    ) -> float:
        work = trial_process.FoldWork(
            family=family,
            params=params,
            extra={} if smoothing is None else {"smoothing": smoothing},
            n_jobs=self.n_jobs,
            seed=self.plan.seed,
            X=self.X,
            y=self.y,
            folds=self.folds,
        )
        predicted = np.full(len(self.y), np.nan)
        folds = trial_process.fold_predictions(work, self.trial_limit_s)
        try:
            for step, fold_predicted in folds:
                predicted[self.folds[step][1]] = fold_predicted
                seen = ~np.isnan(predicted)
                partial = rmsle(self.y[seen], predicted[seen])
                runs.log(self.client, run_id, metrics={RUNNING_CV: partial}, step=step)
                trial.report(partial, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"fold {step + 1}: {PRIMARY} {partial:.4f}")
        finally:
            folds.close()  # a pruned or failed trial's child process is killed now
        metrics = regression_metrics(self.y, predicted)
        runs.log(self.client, run_id, metrics={f"cv_{k}": v for k, v in metrics.items()})
        return metrics[PRIMARY]


@timings.step("study")  # benchmarks/loop.py times it
def run_worker(
    study_name: str,
    settings: Settings,
    *,
    timeout_s: float | None = None,
    worker: int | None = None,
) -> int:
    """Run trials of ``study_name`` until its trial budget or its wall-clock budget is spent.

    The wall-clock budget is ``timeout_s`` (None: ``settings.search.search_timeout_s``) counted
    from the study's first trial, shared by every worker; a worker starts no trial past it, so
    the study overruns it by at most the trial each worker is running (bounded by the per-trial
    limit, ``search_trial_timeout_s``). The trial budget overruns by at most one trial per worker
    too.
    Returns how many trials this worker finished (completed, pruned or stopped); each trial it
    runs carries ``worker`` (its index among the retraining's workers) as a user attribute.
    Safe to run in any number of processes or machines at once; this is what Airflow's mapped
    tasks call.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, plan = load_study(study_name, settings, worker)
    if counted_trials(study) >= plan.n_trials:
        return 0
    budget_s = settings.search.search_timeout_s if timeout_s is None else timeout_s
    left = seconds_left(study, budget_s)
    if left is not None and left <= 0:
        return 0
    rows = data.training_rows(settings, plan.batch_ids)
    found = data.data_hash(rows)
    if found != plan.data_hash:
        raise Conflict(
            f"CLEAN rows of batches {plan.batch_ids} changed since study {study_name} was "
            f"planned (data hash {found[:12]} != {plan.data_hash[:12]}); plan a new study"
        )
    objective = _Objective(plan, data.sample(rows, plan.sample_rows, plan.seed), settings, worker)
    del rows  # the worker keeps only the search sample
    trial_process.warm_up()
    study.optimize(
        objective,
        timeout=seconds_left(study, budget_s),  # reading the rows took some of it
        callbacks=[MaxTrialsCallback(plan.n_trials, states=COUNTED_STATES)],
        catch=(Exception,),
        gc_after_trial=True,
    )
    return objective.finished


def _worker_process(
    study_name: str, settings: Settings, timeout_s: float | None, log_file: Path | None, index: int
) -> None:
    if log_file is not None:
        log_to_file(log_file)
    run_worker(study_name, settings, timeout_s=timeout_s, worker=index)


def run_workers(
    study_name: str,
    settings: Settings,
    workers: int,
    timeout_s: float | None = None,
    log_file: Path | None = None,
) -> None:
    """Run ``workers`` worker processes on the study and wait for them all (their library
    output goes to ``log_file`` when given)."""
    context = multiprocessing.get_context("spawn")  # no inherited threads, sockets or run ids
    processes = [
        context.Process(
            target=_worker_process,
            args=(study_name, settings, timeout_s, log_file, i),
            name=f"search-worker-{i}",
        )
        for i in range(workers)
    ]
    for worker in processes:
        worker.start()
    for worker in processes:
        worker.join()
    failed = [p.name for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"search workers failed: {', '.join(failed)}")
