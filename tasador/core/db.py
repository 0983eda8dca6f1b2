"""Database URLs and engines of the configured PostgreSQL databases.

A URL left unset is an error here: entry points fill unset URLs with databases of the embedded
PostgreSQL (``tasador.startup.resolve``) before any library code runs.

Engines have an owner. :func:`engine_for` keeps one pooled engine per URL for the whole process
(library code asks for it wherever it needs one) and never drops one by itself: a dropped engine
keeps its pooled connections open until garbage collection. The entry point that runs the work
(a command, a server, a DAG task, a test) wraps it in :func:`owning_engines`, which disposes of
every engine made inside it when the work ends; :func:`dispose_engines` disposes of them all.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import sqlalchemy as sa
from psycopg.copy import QueuedLibpqWriter
from pydantic import SecretStr

from tasador.core.config import DatabaseSettings
from tasador.core.errors import NotConfigured

DatabaseKind = Literal["raw", "clean", "optuna", "mlflow"]

SETTING_OF: dict[DatabaseKind, str] = {
    "raw": "raw_db_url",
    "clean": "clean_db_url",
    "optuna": "optuna_storage_url",
    "mlflow": "mlflow_backend_url",
}


def database_url(kind: DatabaseKind, databases: DatabaseSettings) -> str:
    """The plain ``postgresql://`` URL of one of the project's databases."""
    configured: SecretStr | None = getattr(databases, SETTING_OF[kind])
    if configured is None:
        raise NotConfigured(
            f"TASADOR_{SETTING_OF[kind].upper()} is not set (the `tasador` commands start an "
            "embedded PostgreSQL for it; library code does not)"
        )
    return str(configured.get_secret_value())


def sqlalchemy_url(url: str, driver: str = "psycopg") -> str:
    """Pin a driver onto a ``postgresql://`` URL (SQLAlchemy would default to psycopg2)."""
    for prefix in (
        "postgresql+psycopg2://",
        "postgresql+psycopg://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return f"postgresql+{driver}://" + url[len(prefix) :]
    return url


_ENGINES: dict[str, sa.Engine] = {}
_ENGINES_LOCK = threading.Lock()  # serving's threads ask for engines concurrently


def engine_for(url: str) -> sa.Engine:
    """The pooled engine of ``url`` in this process: made at the first request, kept until its
    owner disposes of it (:func:`owning_engines`, :func:`dispose_engines`)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True)
        return engine


def dispose_engines(urls: Iterable[str] | None = None) -> None:
    """Close the pooled connections of the engines of ``urls`` (default: every engine made so
    far) and forget those engines; a later :func:`engine_for` makes a new one.

    A connection checked out at that moment is closed when it is returned, not cut off."""
    with _ENGINES_LOCK:
        chosen = list(_ENGINES) if urls is None else [u for u in urls if u in _ENGINES]
        engines = [_ENGINES.pop(url) for url in chosen]
    for engine in engines:
        engine.dispose()


@contextmanager
def owning_engines() -> Iterator[None]:
    """Own the engines made inside the block: leaving it (however) disposes of each of them.

    Engines that existed on entry belong to an enclosing owner and are left alone, so owners
    nest: a test session, then each test."""
    with _ENGINES_LOCK:
        before = set(_ENGINES)
    try:
        yield
    finally:
        with _ENGINES_LOCK:
            made = [url for url in _ENGINES if url not in before]
        dispose_engines(made)


def engine(kind: DatabaseKind, databases: DatabaseSettings) -> sa.Engine:
    """The engine of one of the project's databases."""
    return engine_for(database_url(kind, databases))


def copy_out_csv(engine: sa.Engine, query: str) -> io.BytesIO:
    """The rows of ``query`` as CSV with a header, read with PostgreSQL ``COPY ... TO STDOUT``
    (several times faster than fetching rows through the driver)."""
    buffer = io.BytesIO()
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None  # an open connection always has its psycopg connection
        cursor = driver.cursor()
        with cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            for chunk in copy:
                buffer.write(chunk)
    buffer.seek(0)
    return buffer


def copy_new_rows(
    conn: sa.Connection,
    table: str,
    columns: Sequence[str],
    key: str,
    send: Callable[[Any], None],
    binary: bool = False,
) -> int:
    """Within ``conn``'s transaction (once per transaction): ``send(copy)`` writes rows of
    ``columns`` into a psycopg COPY (text, or ``binary``) of a temporary twin of ``table``; the
    rows whose ``key`` (its unique columns, e.g. ``"a, b"``) is not stored yet are then inserted.
    Returns how many were new.

    Why not COPY straight into ``table``: a row already there would fail the whole COPY, and a
    write retried after a lost commit acknowledgement must add nothing."""
    names = ", ".join(columns)
    driver = conn.connection.driver_connection
    assert driver is not None  # an open connection always has its psycopg connection
    cursor = driver.cursor()
    cursor.execute(
        f"CREATE TEMP TABLE incoming ON COMMIT DROP AS SELECT {names} FROM {table} WITH NO DATA"
    )
    # Binary streams are large and come in encoded chunks: the queued writer sends from a thread
    # of its own, so the server loads one chunk while the next is encoded.
    writer = QueuedLibpqWriter(cursor) if binary else None
    options = " (FORMAT binary)" if binary else ""
    with cursor.copy(f"COPY incoming ({names}) FROM STDIN{options}", writer=writer) as copy:
        send(copy)
    cursor.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM incoming ON CONFLICT ({key}) DO NOTHING"
    )
    return int(cursor.rowcount)
