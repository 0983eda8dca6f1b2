"""One retraining end to end, in this process and its worker processes: plan, search, finish.

Airflow runs the same three steps as separate tasks (``prepare_study``, mapped ``run_worker``,
``finish_study``); this is the single-machine path behind ``tasador search``.
"""

from __future__ import annotations

from collections.abc import Sequence

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
) -> RetrainingResult:
    """Plan a study on the batches, run the search workers, then refit and face production."""
    plan = prepare_study(
        settings,
        batch_ids,
        n_trials=n_trials,
        decision_id=decision_id,
        reason=reason,
        families=families,
    )
    run_workers(
        plan.study_name,
        settings,
        workers or settings.search_workers,
        timeout_s if timeout_s is not None else settings.search_timeout_s,
    )
    return finish_study(plan.study_name, settings)
