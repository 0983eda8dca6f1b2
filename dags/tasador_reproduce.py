"""Reproduce: rebuild a model version from RAW and compare it with the registered one (manual
runs only).

Triggered by hand with Params; the task calls the same function as `tasador reproduce` and
returns its figures. A version that does not come out the same fails the run at once, naming what
differs (no retry: a second try would rebuild the same rows). It registers, logs and moves nothing.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from tasador.core import db
from tasador.core.config import get_settings
from tasador.core.process import prepare_process
from tasador.loop.dag_defaults import dag_args, optional_param

prepare_process()  # this file is the entry point of every task process that runs it


@dag(
    dag_id="tasador_reproduce",
    schedule=None,
    **dag_args(),
    params={
        "version": Param(1, type="integer", minimum=1, description="The version to rebuild."),
        "tolerance": optional_param(
            "number",
            "Relative tolerance on the holdout RMSLE and the median price difference "
            "(default: TASADOR_REPRODUCE_TOLERANCE, 0.01).",
            exclusiveMinimum=0,
            exclusiveMaximum=1,
        ),
    },
)
def tasador_reproduce() -> None:
    @task
    @db.owning_engines()
    def reproduce(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from tasador.loop.reproduce import describe
        from tasador.loop.reproduce import reproduce as rebuild  # at run time: MLflow is slow

        assert params is not None
        result = rebuild(get_settings(), int(params["version"]), params["tolerance"])
        print("\n".join(describe(result)))  # the task log
        if not result.reproduced:
            raise AirflowFailException("; ".join(result.differences))
        return result.model_dump(mode="json")

    reproduce()


tasador_reproduce()
