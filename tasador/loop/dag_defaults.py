"""What the Airflow DAGs share: the retrain Asset and the task defaults.

The DAG files in ``dags/`` stay thin; every step they call is a tested function of
``tasador.loop`` or ``experiments``.
"""

from __future__ import annotations

from datetime import timedelta

# The ingestion DAG updates this Asset when a batch calls for retraining; the training DAG is
# scheduled on it (data-aware scheduling). The event's extra carries the decision id.
RETRAIN_ASSET_URI = "tasador://retrain-requests"

DEFAULT_ARGS = {
    "owner": "tasador",
    "retries": 2,
    "retry_delay": timedelta(seconds=10),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
    "execution_timeout": timedelta(minutes=30),
}
