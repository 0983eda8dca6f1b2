"""Live drift: on a schedule (``TASADOR_LIVE_SCHEDULE``, hourly by default), compare the requests
served since the last check with the production model's training rows.

The task calls the same function as `tasador monitor` (tasador.loop.monitor), which stores the
result once per window of requests: a retried or overlapping run adds nothing.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from tasador.core import db
from tasador.core.config import get_settings
from tasador.core.process import prepare_process
from tasador.loop.dag_defaults import dag_args

prepare_process()  # this file is the entry point of every task process that runs it


@dag(dag_id="tasador_monitoring", schedule=get_settings().drift.live_schedule, **dag_args())
def tasador_monitoring() -> None:
    @task
    @db.owning_engines()
    def live_drift() -> dict[str, Any]:
        from tasador.loop.monitor import check_live_drift  # at run time: MLflow is slow to load

        outcome = check_live_drift(get_settings())
        check = outcome.check
        return {
            "stored": outcome.stored,
            "alarm": check is not None and check.alarm,
            "rows": check.rows if check is not None else 0,
            "summary": outcome.summary,
        }

    live_drift()


tasador_monitoring()
