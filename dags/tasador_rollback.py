"""Rollback: move the production alias back (manual runs only), with the operator's reason.

Triggered by hand with Params; the task calls the same function as `tasador rollback`, which
moves the alias under the promotion lock and records the move in the alias history. Serving
follows the alias within one poll interval.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task

from tasador.core import db
from tasador.core.config import get_settings
from tasador.core.process import prepare_process
from tasador.loop.dag_defaults import dag_args, optional_param

# A task that reaches a database owns the engines its step makes: @db.owning_engines() disposes
# of them when the task ends, so a worker process that runs many tasks keeps no idle pools.
prepare_process()  # this file is the entry point of every task process that runs it


@dag(
    dag_id="tasador_rollback",
    schedule=None,
    **dag_args(),
    params={
        "to_version": optional_param(
            "integer",
            "Version to restore (default: the one before the current production).",
            minimum=1,
        ),
        "reason": Param(
            "rolled back by an operator (Airflow)",
            type="string",
            minLength=1,
            description="Why: kept in the alias history.",
        ),
    },
)
def tasador_rollback() -> None:
    # Two tasks: the target is fixed once, so a retried move restores the same version and
    # finds it done, instead of undoing itself.
    @task
    @db.owning_engines()
    def target(params: dict[str, Any] | None = None) -> int:
        from experiments.rollback import rollback_target  # at run time: MLflow is slow to load

        assert params is not None
        return int(params["to_version"] or rollback_target(get_settings()))

    @task
    @db.owning_engines()
    def roll_back(version: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from experiments.rollback import rollback

        assert params is not None
        move = rollback(get_settings(), params["reason"], version, repeat_ok=True)
        return {"version": move.version, "previous_version": move.previous_version}

    roll_back(target())


tasador_rollback()
