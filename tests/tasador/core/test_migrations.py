"""Migrations of RAW and CLEAN: adopting pre-Alembic databases, idempotence, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tasador.core import db, migrations

FIXTURES = Path(__file__).parent / "fixtures"
MakeDatabase = Callable[[str], str]
HEAD: dict[migrations.Database, str] = {"raw": "0005", "clean": "0005"}


def old_database(make_database: MakeDatabase, database: migrations.Database) -> str:
    """A database as commit 6c7bf01's ``metadata.create_all`` left it (no version table)."""
    url = make_database(f"old_{database}")
    with db.engine_for(url).begin() as conn:
        conn.exec_driver_sql((FIXTURES / f"schema_6c7bf01_{database}.sql").read_text())
    return url


def schema(url: str) -> dict[str, Any]:
    """Tables, columns (type, nullability, default), keys and indexes, comparable as JSON."""
    inspector = sa.inspect(db.engine_for(url))
    out: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table),
            "unique": sorted(inspector.get_unique_constraints(table), key=lambda u: u["name"]),
            "foreign": inspector.get_foreign_keys(table),
            "checks": inspector.get_check_constraints(table),
            "indexes": sorted(inspector.get_indexes(table), key=lambda i: i["name"]),
        }
    return json.loads(json.dumps(out, default=str, sort_keys=True))


def fill_raw(url: str) -> uuid.UUID:
    request_id = uuid.uuid4()
    with db.engine_for(url).begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO batches (id, group_number, batch_number, row_count, payload_sha256, "
            "source) VALUES (1, 3, 0, 2, repeat('a', 64), 'api')"
        )
        conn.exec_driver_sql(
            "INSERT INTO batch_rows (batch_id, row_index, price, city) "
            "VALUES (1, 0, '100000', 'Ames'), (1, 1, '250000', 'Erie')"
        )
        conn.execute(
            sa.text(
                "INSERT INTO inference_requests (requested_at, endpoint, inputs, prediction, "
                "status_code, request_id, row_index) "
                "VALUES (now(), '/predict', '{\"bed\": 3}', 123.0, 200, :r, 0)"
            ),
            {"r": request_id},
        )
    return request_id


def fill_clean(url: str) -> None:
    with db.engine_for(url).begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO batches (id, group_number, day, batch_number, payload_sha256, rows_in, "
            "rows_out, report) VALUES (1, 3, '', 0, repeat('a', 64), 2, 1, '{\"dropped\": {}}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO listings (batch_id, row_index, row_hash, is_holdout, price, city) "
            "VALUES (1, 0, 42, false, 100000, 'Ames')"
        )
        conn.exec_driver_sql(
            "INSERT INTO decisions (batch_id, verdict, reason, evidence) "
            "VALUES (1, 'retrain', 'first batch.', '{}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO model_promotions (model_name, challenger_version, promoted, "
            "challenger_rmsle, margin, holdout_rows, study_name, retrain_decision_id, summary) "
            "VALUES ('realtor', 1, true, 0.3, 0.01, 10, 'study', 1, 'first.')"
        )


def scalar(url: str, query: str) -> Any:
    with db.engine_for(url).connect() as conn:
        return conn.exec_driver_sql(query).scalar_one()


def test_an_old_raw_database_keeps_every_row(make_database: MakeDatabase) -> None:
    url = old_database(make_database, "raw")
    request_id = fill_raw(url)
    assert migrations.upgrade(url, "raw") == HEAD["raw"]
    assert scalar(url, "SELECT count(*) FROM batches") == 1
    assert scalar(url, "SELECT string_agg(city, ',' ORDER BY row_index) FROM batch_rows") == (
        "Ames,Erie"
    )
    assert scalar(url, "SELECT request_id FROM inference_requests") == request_id


def test_an_old_clean_database_keeps_every_row_under_the_new_name(
    make_database: MakeDatabase,
) -> None:
    url = old_database(make_database, "clean")
    fill_clean(url)
    assert migrations.upgrade(url, "clean") == HEAD["clean"]
    assert not sa.inspect(db.engine_for(url)).has_table("batches")
    assert scalar(url, "SELECT report->'dropped' FROM cleaned_batches WHERE id = 1") == {}
    assert scalar(url, "SELECT city FROM listings WHERE batch_id = 1") == "Ames"
    assert scalar(url, "SELECT verdict FROM decisions WHERE batch_id = 1") == "retrain"
    assert scalar(url, "SELECT challenger_version FROM model_promotions") == 1
    assert scalar(url, "SELECT guard FROM model_promotions") is None  # decided before 0005


@pytest.mark.parametrize("database", ["raw", "clean"])
def test_a_new_database_gets_the_schema_an_old_one_upgrades_to(
    make_database: MakeDatabase, database: migrations.Database
) -> None:
    old, new = old_database(make_database, database), make_database(f"new_{database}")
    migrations.upgrade(old, database)
    migrations.upgrade(new, database)
    assert schema(new) == schema(old)
    assert "alembic_version" in schema(new)


def test_a_raw_database_from_before_the_request_key_gets_it(make_database: MakeDatabase) -> None:
    url = old_database(make_database, "raw")
    with db.engine_for(url).begin() as conn:
        conn.exec_driver_sql(
            "ALTER TABLE inference_requests DROP COLUMN request_id, DROP COLUMN row_index"
        )
        conn.exec_driver_sql(
            "INSERT INTO inference_requests (requested_at, endpoint, inputs, status_code) "
            "VALUES (now(), '/predict', '{}', 422)"
        )
    migrations.upgrade(url, "raw")
    assert scalar(url, "SELECT count(*) FROM inference_requests WHERE request_id IS NULL") == 1
    reference = make_database("ref_raw")
    migrations.upgrade(reference, "raw")
    assert schema(url) == schema(reference)


def test_the_old_ad_hoc_unique_index_becomes_the_constraint(make_database: MakeDatabase) -> None:
    url = old_database(make_database, "raw")
    with db.engine_for(url).begin() as conn:  # what the inference log's ALTER used to leave
        conn.exec_driver_sql("ALTER TABLE inference_requests DROP CONSTRAINT inference_row_key")
        conn.exec_driver_sql(
            "CREATE UNIQUE INDEX inference_row_key ON inference_requests (request_id, row_index)"
        )
    migrations.upgrade(url, "raw")
    reference = make_database("ref_raw")
    migrations.upgrade(reference, "raw")
    assert schema(url) == schema(reference)


def test_a_partial_old_clean_database_is_completed(make_database: MakeDatabase) -> None:
    url = make_database("partial_clean")
    ddl = (FIXTURES / "schema_6c7bf01_clean.sql").read_text()
    decisions_ddl = ddl[ddl.index("CREATE TABLE decisions") :].split(";")[0]
    with db.engine_for(url).begin() as conn:  # only the decisions store had run
        conn.exec_driver_sql(decisions_ddl)
    migrations.upgrade(url, "clean")
    assert {"cleaned_batches", "listings", "decisions", "model_promotions"} <= set(schema(url))


@pytest.mark.parametrize("database", ["raw", "clean"])
def test_upgrading_twice_changes_nothing(
    make_database: MakeDatabase, database: migrations.Database
) -> None:
    url = make_database(database)
    migrations.upgrade(url, database)
    before = schema(url)
    assert migrations.upgrade(url, database) == HEAD[database]
    assert schema(url) == before


UPGRADE = (
    "import sys; from tasador.core import migrations; print(migrations.upgrade(*sys.argv[1:]))"
)


@pytest.mark.parametrize("old", [False, True])
@pytest.mark.slow
def test_concurrent_upgrades_both_succeed(make_database: MakeDatabase, old: bool) -> None:
    """Separate processes (as two services starting at once), started together."""
    urls = {
        d: old_database(make_database, d) if old else make_database(d) for d in ("raw", "clean")
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE, urls[d], d], stdout=subprocess.PIPE, text=True
        )
        for d in ("raw", "clean", "raw", "clean")
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in processes]
    assert [p.returncode for p in processes] == [0] * 4
    assert outputs == [HEAD[d] for d in ("raw", "clean", "raw", "clean")]
    assert scalar(urls["raw"], "SELECT count(*) FROM alembic_version") == 1


def test_concurrent_upgrades_in_one_process_take_turns(make_database: MakeDatabase) -> None:
    url = make_database("clean")
    with ThreadPoolExecutor(max_workers=3) as pool:
        revisions = list(pool.map(lambda _: migrations.upgrade(url, "clean"), range(3)))
    assert revisions == [HEAD["clean"]] * 3
    assert scalar(url, "SELECT count(*) FROM alembic_version") == 1


def test_an_unknown_database_is_refused() -> None:
    with pytest.raises(migrations.BadInput):
        migrations.config("optuna")  # type: ignore[arg-type]


def test_raw_0003_adds_gaps_and_rejected_rows_and_keeps_batches(
    make_database: MakeDatabase,
) -> None:
    url = old_database(make_database, "raw")
    fill_raw(url)
    migrations.upgrade(url, "raw")
    assert scalar(url, "SELECT rejected_count FROM batches WHERE id = 1") == 0
    assert scalar(url, "SELECT count(*) FROM batch_gaps") == 0
    assert scalar(url, "SELECT count(*) FROM rejected_rows") == 0


def test_clean_0003_turns_past_promotions_into_the_alias_history(
    make_database: MakeDatabase,
) -> None:
    url = old_database(make_database, "clean")
    fill_clean(url)
    with db.engine_for(url).begin() as conn:  # a verdict that kept its challenger out
        conn.exec_driver_sql(
            "INSERT INTO model_promotions (model_name, challenger_version, previous_version, "
            "promoted, challenger_rmsle, margin, holdout_rows, study_name, summary) "
            "VALUES ('realtor', 2, 1, false, 0.4, 0.01, 10, 'study', 'worse.')"
        )
    migrations.upgrade(url, "clean")
    with db.engine_for(url).connect() as conn:
        moves = conn.exec_driver_sql(
            "SELECT version, previous_version, cause, reason FROM alias_moves"
        ).all()
    assert [tuple(m) for m in moves] == [(1, None, "promotion", "first.")]


def test_an_old_clean_database_loses_the_listings_foreign_key(make_database: MakeDatabase) -> None:
    url = old_database(make_database, "clean")
    fill_clean(url)
    migrations.upgrade(url, "clean")
    assert sa.inspect(db.engine_for(url)).get_foreign_keys("listings") == []
    assert scalar(url, "SELECT city FROM listings WHERE batch_id = 1") == "Ames"
