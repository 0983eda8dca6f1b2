"""The study note optuna-dashboard shows: written in its format, read back by optuna-dashboard."""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.storages import RDBStorage
from optuna_dashboard import get_note
from sqlalchemy.pool import NullPool

from experiments import study_note
from experiments.study import StudyPlan

PLAN = StudyPlan(
    study_name="realtor-price-batches-3-5",
    batch_ids=[3, 4, 5],
    data_hash="abc",
    training_rows=1800,
    experiment_id="1",
    parent_run_id="-",
    n_trials=40,
    cv_folds=3,
    sample_rows=30000,
    seed=42,
    spaces={},
    decision_id=12,
    reason="Retrain. PSI of house_size is 0.31 (limit 0.2).",
)


def _study(make_database: Callable[[str], str]) -> optuna.Study:
    # No pool: the test leaves no connection open to its database.
    storage = RDBStorage(make_database("optuna"), engine_kwargs={"poolclass": NullPool})
    return optuna.create_study(storage=storage, study_name=PLAN.study_name)


def test_the_note_says_why_the_study_ran_then_its_verdict(
    make_database: Callable[[str], str],
) -> None:
    study = _study(make_database)
    study_note.write_note(study, study_note.note_text(PLAN))
    note = get_note(study)
    assert "**Why it ran (decision 12):** Retrain. PSI of house_size is 0.31" in note
    assert "Batches 3, 4, 5: 1800 training rows, 40 trials, 3-fold RMSLE." in note
    assert "not decided yet" in note

    verdict = "Promoted version 4: holdout RMSLE 0.412 vs 0.455 for version 3."
    study_note.write_note(study, study_note.note_text(PLAN, verdict))
    assert get_note(study).endswith(f"**Verdict:** {verdict}")
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert attrs[study_note.NOTE_VERSION] == 2  # a new version, as the dashboard's editor writes


def test_a_long_note_is_split_and_a_shorter_one_replaces_it_whole(
    make_database: Callable[[str], str],
) -> None:
    study = _study(make_database)
    long = "x" * (2 * study_note.PIECE_CHARS + 10)  # three attributes
    study_note.write_note(study, long)
    assert get_note(study) == long
    study_note.write_note(study, "short")
    assert get_note(study) == "short"


def test_a_study_started_by_hand_says_so() -> None:
    plan = PLAN.model_copy(update={"decision_id": None, "reason": None})
    text = study_note.note_text(plan)
    assert "**Why it ran:** no retrain decision: started by hand" in text
