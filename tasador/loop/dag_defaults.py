"""What the Airflow DAGs share: the retrain Asset, the task defaults and the Params' shape.

The DAG files in ``dags/`` stay thin; every step they call is a tested function of
``tasador.loop`` or ``experiments``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from airflow.sdk import Param

# The ingestion DAG updates this Asset when a batch calls for retraining; the training DAG is
# scheduled on it (data-aware scheduling). The event's extra carries the decision id.
RETRAIN_ASSET_URI = "tasador://retrain-requests"

# Search workers run in their own pool (created by `airflow-init` and the local runner with
# the slots the deployment gives them) and Celery queue, so a long study never takes the slots
# an ingestion run needs, and a separate worker fleet can serve the queue (docs/scale-out.md).
SEARCH_POOL = "tasador_search"
SEARCH_QUEUE = "search"

DEFAULT_ARGS = {
    "owner": "tasador",
    "retries": 2,
    "retry_delay": timedelta(seconds=10),
    # A multiplier in Airflow 3.3 (True would be 1.0, a constant delay): 10s, 20s, 40s... capped.
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=5),
    "execution_timeout": timedelta(minutes=30),
}


def dag_args() -> dict[str, Any]:
    """What every Tasador DAG declares besides its id, schedule and Params (a fresh dict each
    call, so no DAG shares another's ``tags`` list)."""
    return {
        "start_date": datetime(2026, 1, 1, tzinfo=UTC),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": DEFAULT_ARGS,
        "tags": ["tasador"],
    }


def optional_param(kind: Literal["integer", "number"], description: str, **bounds: Any) -> Param:
    """A run's Param that may stay empty (None: the task picks the default ``description``
    names), with JSON-schema ``bounds`` (``minimum``, ``maximum``, ``exclusiveMinimum``)."""
    # Imported here: tasador.local_airflow reads this module's names without loading Airflow's SDK.
    from airflow.sdk import Param

    return Param(None, type=["null", kind], description=description, **bounds)
