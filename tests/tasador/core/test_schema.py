"""The tables the code declares (tasador.core.tables) are the tables the migrations make.

Alembic's autogenerate comparison reads a freshly migrated database and lists every operation
that would turn it into the declared metadata: tables, columns, types, nullability, server
defaults, indexes and unique constraints. An empty list means they agree. What it does not
compare (check constraints, identity columns, a float's precision: it takes ``Float(24)`` and
``double precision`` for the same type) is compared on a database made from the declarations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tasador.core import db, migrations
from tasador.core.tables import clean, raw

DECLARED: dict[migrations.Database, sa.MetaData] = {"raw": raw.metadata, "clean": clean.metadata}
MakeMigrated = Callable[[migrations.Database], str]


def differences(url: str, metadata: sa.MetaData) -> list[Any]:
    """What autogenerate would change in the database at ``url`` to match ``metadata``."""
    with db.engine_for(url).connect() as conn:  # disposed of by the test's owner (conftest)
        options = {"compare_type": True, "compare_server_default": True}
        return list(compare_metadata(MigrationContext.configure(conn, opts=options), metadata))


@pytest.mark.parametrize("database", ["raw", "clean"])
def test_migrated_schema_is_the_declared_one(
    make_migrated_database: MakeMigrated, database: migrations.Database
) -> None:
    url = make_migrated_database(database)
    assert differences(url, DECLARED[database]) == []


def unchecked_by_autogenerate(url: str) -> dict[str, Any]:
    """Per table: each column's type as PostgreSQL names it and its identity, and the checks."""
    inspector = sa.inspect(db.engine_for(url))
    return {
        table: (
            [(c["name"], str(c["type"]), c.get("identity")) for c in inspector.get_columns(table)],
            sorted((c["name"], c["sqltext"]) for c in inspector.get_check_constraints(table)),
        )
        for table in inspector.get_table_names()
        if table != "alembic_version"
    }


@pytest.mark.parametrize("database", ["raw", "clean"])
def test_declared_tables_create_the_migrated_types_and_checks(
    make_database: Callable[[str], str],
    make_migrated_database: MakeMigrated,
    database: migrations.Database,
) -> None:
    declared = make_database(f"declared_{database}")
    with db.engine_for(declared).begin() as conn:
        DECLARED[database].create_all(conn)
    migrated = make_migrated_database(database)
    assert unchecked_by_autogenerate(declared) == unchecked_by_autogenerate(migrated)


def test_a_declared_change_the_migrations_lack_is_found(
    make_migrated_database: MakeMigrated,
) -> None:
    """The comparison is not vacuous: a column, a type and an index the migrations do not make
    are each reported."""
    url = make_migrated_database("clean")
    changed = sa.MetaData()
    for table in clean.metadata.tables.values():
        table.to_metadata(changed)
    decisions = changed.tables["decisions"]
    decisions.append_column(sa.Column("reviewer", sa.Text))
    decisions.c.reason.type = sa.Integer()
    sa.Index("decisions_by_verdict", decisions.c.verdict)
    found = differences(url, changed)
    assert ("add_column", None, "decisions", decisions.c.reviewer) in found
    assert any(d[0] == "add_index" and d[1].name == "decisions_by_verdict" for d in found)
    modified = [d[0] for d in found if isinstance(d, list)]  # column changes come in lists
    assert modified and modified[0][0] == "modify_type" and modified[0][3] == "reason"
    assert len(found) == 3
