"""The manual rollback DAG, run through Airflow: the alias goes back and the move is recorded."""

from __future__ import annotations

from experiments import promotions


def test_the_rollback_dag_restores_the_previous_version_with_the_reason(
    promoted_twice,
    run_dag,
):
    c = promoted_twice
    run = run_dag(c.settings, "tasador_rollback", {"reason": "v2 misprices condos"})
    assert run.task_states == {"target": "success", "roll_back": "success"}
    assert run.returns["roll_back"] == {"version": 1, "previous_version": 2}
    assert c.production() == 1
    last = promotions.alias_history(c.engine, c.settings.mlflow.model_name)[-1]
    assert (last.cause, last.reason) == ("rollback", "v2 misprices condos")
