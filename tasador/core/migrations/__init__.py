"""Schema migrations (Alembic) of the RAW and CLEAN databases: one revision tree per database.

:func:`upgrade` brings a database to the newest revision. It also adopts databases created
before migrations existed (tables made by ``metadata.create_all``, no ``alembic_version``): it
stamps the revision their tables already match, then upgrades from there. The trees live in
this package (``raw/``, ``clean/``) and need no ``alembic.ini``, so they work from an installed
wheel and from any working directory.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal, get_args

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.pool import NullPool

from tasador.core.db import sqlalchemy_url
from tasador.core.errors import BadInput

Database = Literal["raw", "clean"]

HERE = Path(__file__).resolve().parent
# Alembic's ``context``/``op`` are module-level proxies, so one process runs one migration at a
# time; between processes the advisory lock orders them.
_IN_PROCESS = threading.Lock()
# One advisory lock per tree: concurrent upgrades of one database wait for each other.
LOCK_KEYS: dict[Database, int] = {"raw": 7_305_218_001, "clean": 7_305_218_002}
# The tables revision 0001 creates; a database holding some of them but no version table
# predates migrations.
BASELINE_TABLES: dict[Database, frozenset[str]] = {
    "raw": frozenset({"batches", "batch_rows", "inference_requests"}),
    "clean": frozenset({"batches", "listings", "decisions", "model_promotions"}),
}


def config(database: Database, connection: sa.Connection | None = None) -> Config:
    """The Alembic configuration of one tree, built in code (``script_location`` absolute)."""
    if database not in get_args(Database):
        raise BadInput(f"database must be 'raw' or 'clean', not {database!r}")
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / database))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str, database: Database) -> str:
    """Upgrade the database at ``url`` (RAW or CLEAN) to the newest revision; return it.

    Runs in one transaction holding ``pg_advisory_xact_lock``, so two processes upgrading at once
    take turns and the second finds nothing to do. Safe to repeat.
    """
    cfg = config(database)
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        with _IN_PROCESS, engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_KEYS[database])))
            cfg.attributes["connection"] = conn
            baseline = pre_migration_revision(conn, database)
            if baseline is not None:
                command.stamp(cfg, baseline)
            command.upgrade(cfg, "head")
            revision = current_revision(conn)
    finally:
        engine.dispose()
    if revision is None:
        raise RuntimeError(f"the {database} database has no revision after upgrading")
    return revision


def current_revision(conn: sa.Connection) -> str | None:
    """The revision a database is at (None: not under migrations)."""
    return MigrationContext.configure(conn).get_current_revision()


def pre_migration_revision(conn: sa.Connection, database: Database) -> str | None:
    """The revision a database created before migrations matches, or None when there is
    nothing to adopt (under migrations already, or no complete baseline to stamp).

    A partial set of baseline tables is not stamped: each store used to create only its own
    tables, and revision 0001 creates the missing ones.
    """
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    if "alembic_version" in tables or not BASELINE_TABLES[database] <= tables:
        return None
    if database == "raw":
        keys = {c["name"] for c in inspector.get_unique_constraints("inference_requests")}
        # The request key exists as a constraint (create_all after it was added): 0002's
        # schema. As a bare unique index (the old ad-hoc ALTER), 0002 still turns it into one.
        return "0002" if "inference_row_key" in keys else "0001"
    return "0001"


def run_environment(target_metadata: sa.MetaData) -> None:
    """The body of each tree's ``env.py``: migrate on the connection :func:`upgrade` passes.

    ``target_metadata`` is the database's declared tables (``tasador.core.tables``), what
    Alembic's autogenerate compares a migrated database with (``tests/tasador/core/test_schema``
    does, so declarations and migrations cannot drift apart).
    """
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise BadInput("migrations run through tasador.core.migrations.upgrade (no offline SQL)")
    context.configure(
        connection=connection, target_metadata=target_metadata, transactional_ddl=True
    )
    with context.begin_transaction():
        context.run_migrations()


def table_exists(name: str) -> bool:
    """For revisions: whether a table exists on the migration's connection."""
    from alembic import op

    return sa.inspect(op.get_bind()).has_table(name)
