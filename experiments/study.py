"""One Optuna study per retraining, searched by several workers at once.

**Lifecycle.** :func:`prepare_study` creates the study on the RDB storage (PostgreSQL), named
after the batch range, with ``load_if_exists`` so re-running it is harmless; it opens the
study's MLflow parent run and stores a :class:`StudyPlan` (batches, data hash, budget, search
spaces, parent run, retrain decision) in the study itself. Which batches a retraining uses, and
what its decision says, is chosen above it (tasador.loop.training); the study takes them as
given. Each worker (experiments.search_worker) needs only the study name and reads the plan
back with :func:`load_study`. The spaces travel inside the plan, so every worker searches the
same space even if a YAML file changes meanwhile.

**Sampling.** The sampler is TPE with ``multivariate`` and ``group`` (a conditional space: each
family's parameters only exist in its trials) and the constant liar, so concurrent workers do
not all propose the same point; the ``MedianPruner`` stops weak trials after a fold.

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
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from mlflow import MlflowClient
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict, Field

from experiments import data, registry, runs, spaces, study_note
from experiments.spaces import SearchSpace
from tasador.core import db, lineage, process, raw_store
from tasador.core.config import Settings
from tasador.core.errors import BadInput, Conflict, NotFound

PLAN_ATTR = "tasador_plan"
RUN_ID_ATTR = "mlflow_run_id"
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
# Metric names: one quantity, one name on every kind of run. ``cv_*`` is the out-of-fold score
# of the whole cross-validation (trials; the refit run carries its best trial's), ``holdout_*``
# the shared holdout's (refit and study runs, logged models); the running score after each
# fold has its own (experiments.search_worker.RUNNING_CV).
WORKER_ATTR = "worker"  # which process ran a trial (``host:pid``)
WORKER_INDEX_ATTR = "worker_index"  # which of the retraining's workers (its Airflow map index)


class RawBatch(BaseModel):
    """A RAW batch as a study found it: the hash of the body received and of the rows stored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payload_sha256: str
    rows_sha256: str  # tasador.core.raw_store.rows_sha256: what `tasador reproduce` checks


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
    # The study's batches in RAW, by batch id (empty in plans made before they were recorded).
    raw_batches: dict[int, RawBatch] = Field(default_factory=dict)

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


def prepare_study(
    settings: Settings,
    batch_ids: Sequence[int],
    *,
    n_trials: int | None = None,
    decision_id: int | None = None,
    reason: str | None = None,
    families: Sequence[str] | None = None,
) -> StudyPlan:
    """Create (or find) the study of a retraining on ``batch_ids``, recording ``decision_id``
    and ``reason`` as its lineage.

    An empty ``batch_ids`` is BadInput. Idempotent: calling it again for the same batches
    returns the stored plan unchanged.
    """
    search_spaces = spaces.load_spaces(settings.search.search_spaces_dir, families)  # fail fast
    ids = sorted(set(batch_ids))
    if not ids:
        raise BadInput("a retraining needs at least one batch id")
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
        reason=reason,
        raw_batches=raw_batches(settings, ids),
    )
    plan = plan.model_copy(update={"parent_run_id": _open_parent_run(mlflow_client, plan)})
    study.set_user_attr(PLAN_ATTR, plan.model_dump(mode="json"))
    # What optuna-dashboard shows: the objective's name and why the study ran.
    study.set_metric_names(study_note.METRIC_NAMES)
    study_note.write_note(study, study_note.note_text(plan))
    _enqueue_champion(study, settings, mlflow_client, search_spaces)
    return plan


def raw_batches(settings: Settings, batch_ids: Sequence[int]) -> dict[int, RawBatch]:
    """The hashes of the batches as RAW holds them now (a batch RAW lacks is left out)."""
    engine = db.engine("raw", settings.databases)
    found = {}
    for batch_id in batch_ids:
        batch = raw_store.get_batch(engine, batch_id)
        if batch is not None:
            found[batch_id] = RawBatch(
                payload_sha256=batch.payload_sha256,
                rows_sha256=raw_store.rows_sha256(engine, batch_id),
            )
    return found


def _open_parent_run(mlflow_client: MlflowClient, plan: StudyPlan) -> str:
    """The study's MLflow run, parent of its trial and refit runs, with the plan logged on it."""
    parent = runs.create_run(
        mlflow_client,
        plan.experiment_id,
        plan.study_name,
        {**plan.lineage_tags(), runs.KIND_TAG: "study"},
    )
    runs.log(
        mlflow_client,
        parent,
        params={
            "families": ",".join(plan.spaces),
            "n_trials": plan.n_trials,
            "cv_folds": plan.cv_folds,
            "training_rows": plan.training_rows,
            "search_rows": min(plan.training_rows, plan.sample_rows),
        },
    )
    mlflow_client.log_dict(parent, plan.spaces, "search_spaces.json")
    return parent


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


def counted_trials(study: optuna.Study) -> int:
    """How many trials count toward the budget (completed or pruned)."""
    return len(study.get_trials(deepcopy=False, states=COUNTED_STATES))


def trials_by_worker(study: optuna.Study) -> dict[str, int]:
    """How many counted trials each worker finished: by worker index (``"0"``, ``"1"``), or by
    process (``host:pid``) for a trial run without one."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False, states=COUNTED_STATES):
        worker = str(
            trial.user_attrs.get(WORKER_INDEX_ATTR, trial.user_attrs.get(WORKER_ATTR, "?"))
        )
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


def log_to_file(path: Path) -> None:
    """Library output of a search process to ``path`` (see ``tasador.core.process``), with
    Optuna's own handler, installed on first use, switched off first."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    process.log_to_file(path)
