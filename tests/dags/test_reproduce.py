"""The manual reproduce DAG, run through Airflow: a searched version comes out the same; once RAW
changed, the run fails at once with what differs."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tasador.core import db
from tasador.local_airflow import DagRunError
from tests.helpers.search import searched_version


def test_the_reproduce_dag_rebuilds_a_version_and_fails_on_changed_raw_rows(
    search_settings, raw_sample, run_dag, local_airflow_server
):
    settings = search_settings.updated(search_trials=2)
    ids = searched_version(settings, raw_sample.iloc[:1400], [800, 600])

    run = run_dag(settings, "tasador_reproduce", {"version": 1, "tolerance": 0.02})
    assert run.task_states == {"reproduce": "success"}
    assert run.returns["reproduce"]["differences"] == []
    assert run.returns["reproduce"]["tolerance"] == 0.02

    with db.engine("raw", settings.databases).begin() as conn:
        conn.execute(sa.text(f"UPDATE batch_rows SET city = 'Nowhere' WHERE batch_id = {ids[1]}"))
    with pytest.raises(DagRunError, match="failed"):
        run_dag(settings, "tasador_reproduce", {"version": 1})
    failed = local_airflow_server.newest_run("tasador_reproduce")
    assert failed.task_states == {"reproduce": "failed"}  # no retry: the same rows again
