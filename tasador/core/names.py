"""Names that two parts of Tasador must agree on, defined once: metrics, artifacts, tags.

Whoever writes a name and whoever reads it import it from here, so a rename cannot leave a
reader behind.
"""

from __future__ import annotations

from tasador.core.metrics import PRIMARY

# Metrics on the shared holdout, logged on a version's run as HOLDOUT_PREFIX + metric name.
HOLDOUT_PREFIX = "holdout_"
HOLDOUT_PRIMARY = f"{HOLDOUT_PREFIX}{PRIMARY}"  # what the retrain decision's model check reads

# Artifacts on a version's run.
REPORT_FILE = "report/model_change.md"
COMPARISON_FILE = "champion_challenger.json"
SEGMENTS_FILE = "promotion_segments.json"  # both models' holdout RMSLE per state and kind
SHAP_DIR = "shap"
SHAP_TABLE = "importance.csv"  # mean |SHAP| per input field, new vs previous production model
SHAP_PLOT = "importance.png"
SHAP_SENTENCE = "summary.txt"  # what changed, in one sentence
STUDY_DIR = "study"  # the study in pictures (experiments.report draws them, the UI shows them)
STUDY_FIGURES = ("history.png", "importance.png", "parallel.png")


def holdout_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The holdout metrics among a run's metrics, by their plain name (``rmsle``, ``mae``...)."""
    return {
        k.removeprefix(HOLDOUT_PREFIX): v
        for k, v in metrics.items()
        if k.startswith(HOLDOUT_PREFIX)
    }
