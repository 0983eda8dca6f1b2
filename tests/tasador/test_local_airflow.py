"""The local Airflow runner uses Airflow's command line and REST API, never its tables."""

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
