"""What a retraining trains on: every clean batch with enough rows, up to the one whose decision
asked for it."""

from __future__ import annotations

from experiments.data import trainable_batch_ids
from experiments.study import StudyPlan, prepare_study
from tasador.core import db, decisions_store
from tasador.core.config import Settings
from tasador.core.errors import NotFound


def training_batches(settings: Settings, decision_id: int | None) -> list[int]:
    """CLEAN batch ids a retraining uses: those with at least ``decide_min_clean_rows`` clean
    rows, up to the decision's batch (all of them, without a decision).

    Raises NotFound when none qualifies: a decision's retraining never falls back to training
    on every batch, and a batch too small to judge is never trained on."""
    minimum = settings.drift.decide_min_clean_rows
    if decision_id is None:
        batch_ids = trainable_batch_ids(settings, minimum)
        if not batch_ids:
            raise NotFound(f"CLEAN holds no batch with {minimum} clean rows to train on")
        return batch_ids
    decision = decisions_store.get_by_id(db.engine("clean", settings.databases), decision_id)
    if decision is None:
        raise NotFound(f"no retrain decision with id {decision_id}")
    batch_ids = trainable_batch_ids(settings, minimum, up_to=decision.batch_id)
    if not batch_ids:
        raise NotFound(
            f"decision {decision_id} (batch {decision.batch_id}) has nothing to train on: no "
            f"batch up to {decision.batch_id} has {minimum} clean rows "
            "(TASADOR_DECIDE_MIN_CLEAN_ROWS)"
        )
    return batch_ids


def plan_retraining(
    settings: Settings, decision_id: int | None, trials: int | None = None
) -> StudyPlan:
    """Create (or find again) the study of a retraining; see experiments.study.prepare_study."""
    return prepare_study(
        settings, training_batches(settings, decision_id), n_trials=trials, decision_id=decision_id
    )
