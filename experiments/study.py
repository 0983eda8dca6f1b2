"""One Optuna study per retraining, searched by several workers at once.

**Lifecycle.** :func:`prepare_study` creates the study on the RDB storage (PostgreSQL), named
after the batch range, with ``load_if_exists`` so re-running it is harmless; it opens the
study's MLflow parent run and stores a :class:`StudyPlan` (batches, data hash, budget, search
spaces, parent run, retrain decision) in the study itself. :func:`run_worker` is what each
worker runs, a local process (``tasador search --workers N``) or an Airflow mapped task: it
needs only the study name, reads the plan back, checks that CLEAN still holds the very rows the
plan was made from, and runs trials until the study's trial budget is spent. The spaces travel
inside the plan, so every worker searches the same space even if a YAML file changes meanwhile.

**Trials.** A trial samples a family (``family`` is a categorical of the study), then that
family's hyperparameters, and scores the model with K-fold cross-validation on the training
rows (a reproducible subset of at most ``search_sample_rows``). After each fold it reports the
running out-of-fold RMSLE; the ``MedianPruner`` stops trials whose partial score is worse than
the median of earlier trials at the same fold, so weak configurations (often a whole family)
cost one fold instead of K. Folds rather than boosting rounds are the pruning steps because
they exist for every family. The sampler is TPE with ``multivariate`` and ``group`` (a
conditional space: each family's parameters only exist in its trials) and the constant liar,
so concurrent workers do not all propose the same point.

**Budgets.** A study stops at ``n_trials`` finished trials or when its wall-clock budget
(``search_timeout_s``, or the caller's) has passed since its first trial, whichever comes first,
counted over every worker; a worker starts no trial past either, so each overruns by at most the
trial each worker is running. A trial's fits run in a child process (experiments.trial_process)
killed at ``search_trial_timeout_s``: the trial is recorded PRUNED with the user attribute
``stopped: time limit`` (it spent budget) and its MLflow run ends KILLED with the same tag.

**Workers that die.** Heartbeats (``search_heartbeat_s``) mark running trials alive; a trial
silent for ``search_grace_s`` is failed by the next worker that starts a trial, and
``RetryHeartbeatStaleTrialCallback`` (Optuna 5's name for ``RetryFailedTrialCallback``)
enqueues it again with the same parameters (up to ``search_max_retries`` times), so a killed
worker's trial is re-run, not lost; the dead trial's MLflow run is closed as FAILED.

**Warm start.** A new study first re-evaluates the production model's configuration (enqueued
from its model version's ``optuna_params`` tag, when the search space still admits it) so the
search always measures the champion's recipe on the new data.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import socket
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict, Field
from sklearn.model_selection import KFold

from experiments import data, registry, runs, spaces, trial_process
from experiments.spaces import SearchSpace
from tasador.core import db, decisions_store, lineage, process, timings
from tasador.core.columns import TARGET
from tasador.core.config import Settings
from tasador.core.errors import BadInput, Conflict, NotFound
from tasador.core.metrics import PRIMARY, regression_metrics, rmsle

PLAN_ATTR = "tasador_plan"
RUN_ID_ATTR = "mlflow_run_id"
STOPPED_ATTR = "stopped"  # user attr (and MLflow tag) of a trial stopped at its time limit
STOPPED_TIME_LIMIT = "time limit"
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
# Metric names: one quantity, one name on every kind of run. ``cv_*`` is the out-of-fold score
# of the whole cross-validation (trials; the refit run carries its best trial's), ``holdout_*``
# the shared holdout's (refit and study runs, logged models), and the running out-of-fold RMSLE
# after each fold, what pruning looks at, has a name of its own.
RUNNING_CV = f"cv_{PRIMARY}_running"
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which process ran a trial (user attr "worker")
WORKER_INDEX_ATTR = "worker_index"  # which of the retraining's workers (its Airflow map index)


class StudyPlan(BaseModel):
    """Everything a worker needs, stored in the study's user attributes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    study_name: str
    batch_ids: list[int] = Field(min_length=1)
    data_hash: str
    training_rows: int
    experiment_id: str
    parent_run_id: str
    n_trials: int = Field(ge=1)
    cv_folds: int = Field(ge=2)
    sample_rows: int
    seed: int
    sampler: Literal["tpe", "random"] = "tpe"
    spaces: dict[str, Any]
    decision_id: int | None = None
    reason: str | None = None

    def lineage_tags(self) -> dict[str, str]:
        tags = {
            lineage.BATCH_IDS: lineage.encode_batch_ids(self.batch_ids),
            lineage.DATA_HASH: self.data_hash,
            lineage.STUDY_NAME: self.study_name,
            runs.STUDY_TAG: self.study_name,
        }
        if self.decision_id is not None:
            tags[lineage.DECISION_ID] = str(self.decision_id)
        if self.reason:
            tags[lineage.RETRAIN_REASON] = self.reason[:5000]  # MLflow's tag value limit is 8k
        return tags

    def search_spaces(self) -> dict[str, SearchSpace]:
        return spaces.spaces_from_json(self.spaces, f"study {self.study_name}")


def study_name_for(batch_ids: Sequence[int], model_name: str) -> str:
    """``<model>-batches-<first>-<last>``, plus a short digest when the ids have gaps."""
    ids = sorted(set(batch_ids))
    if not ids:
        raise BadInput("a study needs at least one batch id")
    span = f"{ids[0]}-{ids[-1]}" if len(ids) > 1 else str(ids[0])
    if ids != list(range(ids[0], ids[-1] + 1)):
        encoded = lineage.encode_batch_ids(ids).encode()
        span += "-" + hashlib.sha256(encoded).hexdigest()[:6]
    return f"{model_name}-batches-{span}"


def storage(settings: Settings) -> RDBStorage:
    """The Optuna storage in PostgreSQL, with heartbeats that retry trials of dead workers."""
    # Heartbeats and grouped TPE are "experimental" in Optuna 5 and warn on every use.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return RDBStorage(
        db.sqlalchemy_url(db.database_url("optuna", settings.databases)),
        engine_kwargs={"pool_pre_ping": True},
        heartbeat_interval=settings.search.search_heartbeat_s,
        grace_period=settings.search.search_grace_s,
        heartbeat_stale_trial_callback=_RetryStaleTrial(settings),
    )


class _RetryStaleTrial:
    """When a worker died mid-trial: enqueue the trial again and close its MLflow run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=settings.search.search_max_retries)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.retry(study, trial)
        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        if run_id is not None:
            mlflow_client = registry.connect(self.settings)
            runs.log(mlflow_client, run_id, tags={runs.STATE_TAG: "FAIL", "error": "worker lost"})
            runs.end(mlflow_client, run_id, "FAILED")


def load_plan(study: optuna.Study) -> StudyPlan:
    """The plan stored on the study; raises Conflict when it has none."""
    raw = study.user_attrs.get(PLAN_ATTR)
    if raw is None:
        raise Conflict(f"study {study.study_name} has no plan: create it with prepare_study")
    return StudyPlan.model_validate(raw)


def load_study(
    study_name: str, settings: Settings, worker: int | None = None
) -> tuple[optuna.Study, StudyPlan]:
    """The named study with its sampler (seeded for ``worker``) and pruner, and its plan;
    raises NotFound if absent."""
    store = storage(settings)
    try:
        probe = optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        raise NotFound(f"no study named {study_name!r} in the Optuna storage") from None
    plan = load_plan(probe)
    sampler = _sampler(plan, worker, len(probe.get_trials(deepcopy=False)))
    study = optuna.load_study(
        study_name=study_name, storage=store, sampler=sampler, pruner=_pruner()
    )
    return study, plan


def _sampler(
    plan: StudyPlan, worker: int | None, trials_before: int
) -> optuna.samplers.BaseSampler:
    # Seeded from the plan, so a one-worker study repeats. Each worker, and each restart of one
    # (an Airflow retry finds trials already there), gets its own seed, or they would repeat
    # each other's first trials.
    seed = int(np.random.SeedSequence([plan.seed, worker or 0, trials_before]).generate_state(1)[0])
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=min(10, max(3, plan.n_trials // 4)),
        multivariate=True,
        group=True,
        constant_liar=True,
    )


def _pruner() -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)


def _decision(settings: Settings, decision_id: int) -> decisions_store.Decision:
    decision = decisions_store.get_by_id(db.engine("clean", settings.databases), decision_id)
    if decision is None:
        raise NotFound(f"no retrain decision with id {decision_id} in CLEAN")
    return decision


def _reason(settings: Settings, decision_id: int | None, reason: str | None) -> str | None:
    if reason is not None or decision_id is None:
        return reason
    return _decision(settings, decision_id).reason


def prepare_study(
    settings: Settings,
    batch_ids: Sequence[int] | None = None,
    *,
    n_trials: int | None = None,
    decision_id: int | None = None,
    reason: str | None = None,
    families: Sequence[str] | None = None,
) -> StudyPlan:
    """Create (or find) the study of a retraining on ``batch_ids``.

    Without ``batch_ids``: every CLEAN batch with at least ``decide_min_clean_rows`` rows, up to
    the decision's batch when ``decision_id`` is given; NotFound when none qualifies (never
    "every batch" instead). An empty ``batch_ids`` is BadInput. Idempotent: calling it again for
    the same batches returns the stored plan unchanged.
    """
    search_spaces = spaces.load_spaces(settings.search.search_spaces_dir, families)  # fail fast
    if batch_ids is not None:
        ids = sorted(set(batch_ids))
        if not ids:
            raise BadInput("a retraining needs at least one batch id")
    else:
        up_to = _decision(settings, decision_id).batch_id if decision_id is not None else None
        minimum = settings.drift.decide_min_clean_rows
        ids = data.trainable_batch_ids(settings, minimum, up_to=up_to)
        if not ids:
            scope = "" if up_to is None else f" up to batch {up_to} (decision {decision_id})"
            raise NotFound(f"CLEAN holds no batch{scope} with {minimum} clean rows to train on")
    name = study_name_for(ids, settings.mlflow.model_name)
    study = optuna.create_study(
        storage=storage(settings), study_name=name, direction="minimize", load_if_exists=True
    )
    if PLAN_ATTR in study.user_attrs:
        return load_plan(study)

    rows = data.training_rows(settings, ids)
    mlflow_client = registry.connect(settings)
    plan = StudyPlan(
        study_name=name,
        batch_ids=ids,
        data_hash=data.data_hash(rows),
        training_rows=len(rows),
        experiment_id=runs.experiment_id(mlflow_client, settings.mlflow.experiment_name),
        parent_run_id="-",
        n_trials=n_trials or settings.search.search_trials,
        cv_folds=settings.search.search_cv_folds,
        sample_rows=settings.search.search_sample_rows,
        seed=settings.search.search_seed,
        sampler=settings.search.search_sampler,
        spaces=spaces.spaces_to_json(search_spaces),
        decision_id=decision_id,
        reason=_reason(settings, decision_id, reason),
    )
    parent = runs.create_run(
        mlflow_client,
        plan.experiment_id,
        name,
        {**plan.lineage_tags(), runs.KIND_TAG: "study"},
    )
    runs.log(
        mlflow_client,
        parent,
        params={
            "families": ",".join(search_spaces),
            "n_trials": plan.n_trials,
            "cv_folds": plan.cv_folds,
            "training_rows": plan.training_rows,
            "search_rows": min(plan.training_rows, plan.sample_rows),
        },
    )
    mlflow_client.log_dict(parent, plan.spaces, "search_spaces.json")
    plan = plan.model_copy(update={"parent_run_id": parent})
    study.set_user_attr(PLAN_ATTR, plan.model_dump(mode="json"))
    _enqueue_champion(study, settings, mlflow_client, search_spaces)
    return plan


def _enqueue_champion(
    study: optuna.Study, settings: Settings, mlflow_client: Any, search_spaces: dict[str, Any]
) -> None:
    version = registry.production_version(mlflow_client, settings)
    if version is None or registry.PARAMS_TAG not in version.tags:
        return
    params = json.loads(version.tags[registry.PARAMS_TAG])
    space = search_spaces.get(params.get(spaces.FAMILY_PARAM))
    # Only when the (possibly narrowed) space still admits it: the space is the operator's say.
    if space is not None and space.admits(params):
        study.enqueue_trial(params, user_attrs={"warm_start": f"production v{version.version}"})


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
        trial.set_user_attr("worker", WORKER)
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


def counted_trials(study: optuna.Study) -> int:
    """How many trials count toward the budget (completed or pruned)."""
    return len(study.get_trials(deepcopy=False, states=COUNTED_STATES))


def trials_by_worker(study: optuna.Study) -> dict[str, int]:
    """How many counted trials each worker finished: by worker index (``"0"``, ``"1"``), or by
    process (``host:pid``) for a trial run without one."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False, states=COUNTED_STATES):
        worker = str(trial.user_attrs.get(WORKER_INDEX_ATTR, trial.user_attrs.get("worker", "?")))
        counts[worker] = counts.get(worker, 0) + 1
    return counts


def seconds_left(study: optuna.Study, timeout_s: float | None) -> float | None:
    """What is left of the study's wall-clock budget: ``timeout_s`` from its first trial's start
    (every worker shares it, wherever and whenever it started); None without a budget."""
    if timeout_s is None:
        return None
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start]
    if not starts:
        return timeout_s
    # Optuna stores naive local times; the workers' clocks are assumed in sync.
    return timeout_s - (datetime.now() - min(starts)).total_seconds()


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


def log_to_file(path: Path) -> None:
    """Library output of a search process to ``path`` (see ``tasador.core.process``), with
    Optuna's own handler, installed on first use, switched off first."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    process.log_to_file(path)


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
