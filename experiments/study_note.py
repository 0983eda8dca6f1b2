"""The note optuna-dashboard shows on a study: why it ran and, once decided, its verdict.

optuna-dashboard keeps a study's note (Markdown) in the study's system attributes: a version
number under ``dashboard:note_ver`` and the text in pieces of at most 2045 characters under
``dashboard:note_str:0``, ``dashboard:note_str:1``, ... Its ``save_note`` writes them so; the
project does not import optuna-dashboard (it lives in its own image, dependency group
``dashboard``), so this module writes the same attributes, and the tests read them back with
optuna-dashboard's ``get_note``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from experiments.study import StudyPlan

NOTE_VERSION = "dashboard:note_ver"
NOTE_PIECE = "dashboard:note_str:"
PIECE_CHARS = 2045  # optuna-dashboard's limit per attribute (its SYSTEM_ATTR_MAX_LENGTH)
METRIC_NAMES = ["RMSLE"]  # the objective: mean RMSLE over the cross-validation folds


def note_text(plan: StudyPlan, verdict: str | None = None) -> str:
    """The note of a study: its retrain reason and, once decided, the promotion verdict."""
    reason = plan.reason or "no retrain decision: started by hand"
    decision = f" (decision {plan.decision_id})" if plan.decision_id is not None else ""
    lines = [
        f"## {plan.study_name}",
        "",
        f"**Why it ran{decision}:** {reason}",
        "",
        f"Batches {', '.join(map(str, plan.batch_ids))}: {plan.training_rows} training rows, "
        f"{plan.n_trials} trials, {plan.cv_folds}-fold RMSLE.",
        "",
        f"**Verdict:** {verdict}" if verdict else "**Verdict:** not decided yet.",
    ]
    return "\n".join(lines)


def write_note(study: optuna.Study, body: str) -> None:
    """Replace the study's note by ``body`` (a new version, as optuna-dashboard's editor does)."""
    # Optuna's public API has no study system attributes; its storage does (as optuna-dashboard
    # uses it).
    storage, study_id = study._storage, study._study_id
    attrs = storage.get_study_system_attrs(study_id)
    pieces = [body[i : i + PIECE_CHARS] for i in range(0, len(body), PIECE_CHARS)]
    storage.set_study_system_attr(study_id, NOTE_VERSION, int(attrs.get(NOTE_VERSION, 0)) + 1)
    for i, piece in enumerate(pieces):
        storage.set_study_system_attr(study_id, f"{NOTE_PIECE}{i}", piece)
    # optuna-dashboard joins every piece there is: a longer note's leftovers become empty.
    stale = sum(1 for key in attrs if key.startswith(NOTE_PIECE))
    for i in range(len(pieces), stale):
        storage.set_study_system_attr(study_id, f"{NOTE_PIECE}{i}", "")
