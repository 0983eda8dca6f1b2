"""The local Airflow runner uses Airflow's command line, never its tables."""

from __future__ import annotations

import re
from pathlib import Path

from tasador import local_airflow

TASADOR = Path(local_airflow.__file__).resolve().parent
AIRFLOW_TABLES = (
    "dag_run|task_instance|xcom|dag|serialized_dag|asset|asset_event|job|slot_pool|log|"
    "dag_version|task_instance_history|rendered_task_instance_fields"
)
SQL_ON_AIRFLOW = re.compile(
    rf"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+[\"`]?(?:{AIRFLOW_TABLES})\b", re.IGNORECASE
)


def test_tasador_holds_no_sql_on_airflows_tables() -> None:
    offenders = []
    for path in TASADOR.rglob("*.py"):
        text = path.read_text()
        offenders += [f"{path}: {m[0]}" for m in SQL_ON_AIRFLOW.finditer(text)]
        if "sqlite3" in text:
            offenders.append(f"{path}: opens a SQLite database")
    assert offenders == []


def test_the_pattern_catches_the_old_queries() -> None:
    old = "SELECT task_id, value FROM xcom WHERE dag_run_id = ?"
    assert SQL_ON_AIRFLOW.search(old)
    assert SQL_ON_AIRFLOW.search("select id from dag_run where dag_id = ?")


OUTPUT = """\
2026-12-02T12:34:41Z [info ] [DAG TEST] starting task_id=decide map_index=-1 [airflow.sdk]
2026-12-02T12:34:42Z [info ] Done. Returned value was: {'decision_id': 3, 'verdict': 'retrain', \
'note': 'a [bracket] inside'}    [airflow.task.operators.python] loc=python.py:233
2026-12-02T12:34:43Z [info ] [DAG TEST] starting task_id=search map_index=0 [airflow.sdk]
2026-12-02T12:34:44Z [info ] Done. Returned value was: 7    [airflow.task.operators.python] loc=x
2026-12-02T12:34:45Z [info ] [DAG TEST] starting task_id=plan map_index=-1 [airflow.sdk]
2026-12-02T12:34:46Z [info ] Done. Returned value was: None    [airflow.task.operators.python] loc=x
"""


def test_returns_come_from_what_dags_test_prints_for_unmapped_tasks() -> None:
    assert local_airflow.printed_returns(OUTPUT) == {
        "decide": {"decision_id": 3, "verdict": "retrain", "note": "a [bracket] inside"},
        "plan": None,
    }
