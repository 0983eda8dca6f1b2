"""What a retraining trains on: every clean batch up to the one whose decision asked for it."""

from __future__ import annotations

from experiments.data import clean_batch_ids
from experiments.study import StudyPlan, prepare_study
from tasador.core import db, decisions_store
from tasador.core.config import Settings
from tasador.core.errors import NotFound


def training_batches(settings: Settings, decision_id: int | None) -> list[int]:
    """CLEAN batch ids a retraining uses: all up to the decision's batch (all, without one)."""
    batch_ids = clean_batch_ids(settings)
    if decision_id is None:
        return batch_ids
    decision = decisions_store.get_by_id(db.engine("clean", settings), decision_id)
    if decision is None:
        raise NotFound(f"no retrain decision with id {decision_id}")
    return [b for b in batch_ids if b <= decision.batch_id]


def plan_retraining(
    settings: Settings, decision_id: int | None, trials: int | None = None
) -> StudyPlan:
    """Create (or find again) the study of a retraining; see experiments.study.prepare_study."""
    return prepare_study(
        settings, training_batches(settings, decision_id), n_trials=trials, decision_id=decision_id
    )
