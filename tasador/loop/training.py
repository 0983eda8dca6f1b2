"""A retraining, the one path that `tasador search` and the training DAG share.

Three steps: :func:`plan_retraining` chooses the batches and creates (or finds again) the study,
:func:`run_search_worker` runs trials of it, :func:`finish_retraining` refits the best trial and
faces production (experiments.champion). Airflow runs them as separate tasks (the workers as
mapped tasks, on any Celery worker); :func:`retrain` runs them in this process and local worker
processes, for the command line.

Which batches: the caller's, or every clean batch with enough rows, up to the one whose decision
asked for the retraining. The decision is looked up here, once, for its batch and its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from experiments import progress
from experiments.champion import RetrainingResult, finish_study
from experiments.data import trainable_batch_ids
from experiments.search_worker import run_worker, run_workers
from experiments.study import StudyPlan, log_to_file, prepare_study
from tasador.core import db, decisions_store
from tasador.core.config import DatabaseSettings, SearchSettings, Settings
from tasador.core.errors import NotFound


def _decision(databases: DatabaseSettings, decision_id: int) -> decisions_store.Decision:
    decision = decisions_store.get_by_id(db.engine("clean", databases), decision_id)
    if decision is None:
        raise NotFound(f"no retrain decision with id {decision_id} in CLEAN")
    return decision


def _trainable(settings: Settings, decision: decisions_store.Decision | None) -> list[int]:
    """Every batch with enough clean rows, up to the decision's; NotFound when none qualifies:
    a decision's retraining never falls back to every batch, and a batch too small to judge is
    never trained on."""
    minimum = settings.drift.decide_min_clean_rows
    if decision is None:
        batch_ids = trainable_batch_ids(settings.databases, minimum)
        if not batch_ids:
            raise NotFound(f"CLEAN holds no batch with {minimum} clean rows to train on")
        return batch_ids
    batch_ids = trainable_batch_ids(settings.databases, minimum, up_to=decision.batch_id)
    if not batch_ids:
        raise NotFound(
            f"decision {decision.id} (batch {decision.batch_id}) has nothing to train on: no "
            f"batch up to batch {decision.batch_id} has {minimum} clean rows "
            "(TASADOR_DECIDE_MIN_CLEAN_ROWS)"
        )
    return batch_ids


def training_batches(settings: Settings, decision_id: int | None) -> list[int]:
    """CLEAN batch ids the retraining of ``decision_id`` uses: those with at least
    ``decide_min_clean_rows`` clean rows, up to the decision's batch (all of them, without a
    decision). Raises NotFound when none qualifies, or the decision does not exist."""
    return _trainable(
        settings, None if decision_id is None else _decision(settings.databases, decision_id)
    )


def plan_retraining(
    settings: Settings,
    decision_id: int | None = None,
    trials: int | None = None,
    *,
    batch_ids: Sequence[int] | None = None,
    reason: str | None = None,
    families: Sequence[str] | None = None,
) -> StudyPlan:
    """Create (or find again) the study of a retraining on ``batch_ids`` (default:
    :func:`training_batches`), its reason the decision's unless ``reason`` is given."""
    decision = None
    # Read only for what it gives: the batches up to its own, and its reason.
    if decision_id is not None and (batch_ids is None or reason is None):
        decision = _decision(settings.databases, decision_id)
    if batch_ids is None:
        batch_ids = _trainable(settings, decision)
    if reason is None and decision is not None:
        reason = decision.reason
    return prepare_study(
        settings,
        batch_ids,
        n_trials=trials,
        decision_id=decision_id,
        reason=reason,
        families=families,
    )


def worker_count(search: SearchSettings, workers: int | None) -> int:
    """How many search workers a retraining runs: the caller's number, else the setting."""
    return workers or search.search_workers


def run_search_worker(
    study_name: str, settings: Settings, worker: int, timeout_s: float | None
) -> int:
    """Search worker number ``worker`` of the planned study (the training DAG's mapped task):
    trials until the study's budgets are spent; how many it finished. ``timeout_s`` None: the
    setting. See experiments.search_worker.run_worker."""
    return run_worker(study_name, settings, timeout_s=timeout_s, worker=worker)


def finish_retraining(study_name: str, settings: Settings) -> RetrainingResult:
    """Champion/challenger once the workers are done; see experiments.champion.finish_study."""
    return finish_study(study_name, settings)


def retrain(
    settings: Settings,
    batch_ids: Sequence[int] | None = None,
    *,
    workers: int | None = None,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    decision_id: int | None = None,
    reason: str | None = None,
    families: Sequence[str] | None = None,
    echo: Callable[[str], None] | None = None,
    log_file: Path | None = None,
) -> RetrainingResult:
    """Plan a study, run its search workers as local processes, then refit and face production.

    ``echo`` gets the search's progress every few seconds; ``log_file`` the library output of
    this process and of the workers."""
    if log_file is not None:
        log_to_file(log_file)
    plan = plan_retraining(
        settings, decision_id, n_trials, batch_ids=batch_ids, reason=reason, families=families
    )
    count = worker_count(settings.search, workers)
    if echo is None:
        run_workers(plan.study_name, settings, count, timeout_s, log_file)
    else:
        echo(f"study {plan.study_name}: {plan.training_rows:,} training rows, {count} workers")
        with progress.watching(settings, plan.study_name, echo, timeout_s):
            run_workers(plan.study_name, settings, count, timeout_s, log_file)
        echo("refitting the best trial, facing production on the holdout, explaining")
    return finish_retraining(plan.study_name, settings)
