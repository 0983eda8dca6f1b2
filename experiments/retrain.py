"""One retraining end to end, in this process and its worker processes: plan, search, finish.

Airflow runs the same three steps as separate tasks (``prepare_study``, mapped ``run_worker``,
``finish_study``); this is the single-machine path behind ``tasador search``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from experiments import progress
from experiments.champion import RetrainingResult, finish_study
from experiments.study import prepare_study, run_workers
from tasador.core.config import Settings


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
    """Plan a study on the batches, run the search workers, then refit and face production.

    ``echo`` gets the search's progress every few seconds; ``log_file`` the workers' library
    output."""
    plan = prepare_study(
        settings,
        batch_ids,
        n_trials=n_trials,
        decision_id=decision_id,
        reason=reason,
        families=families,
    )
    workers = workers or settings.search.search_workers
    if echo is None:
        run_workers(plan.study_name, settings, workers, timeout_s, log_file)
    else:
        echo(f"study {plan.study_name}: {plan.training_rows:,} training rows, {workers} workers")
        with progress.watching(settings, plan.study_name, echo, timeout_s):
            run_workers(plan.study_name, settings, workers, timeout_s, log_file)
        echo("refitting the best trial, facing production on the holdout, explaining")
    return finish_study(plan.study_name, settings)
