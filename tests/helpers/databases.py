"""The test PostgreSQL: plain driver URLs and closing what a test left connected."""

from __future__ import annotations

import psycopg
from sqlalchemy.engine import make_url


def plain(url: str) -> str:
    """``url`` for psycopg itself (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def disconnect(server_url: str, *urls: str) -> None:
    """End every session still connected to the databases at ``urls``.

    Every test's databases are new URLs: ``db.engine_for`` keeps the last 16 engines and drops
    older ones without disposing of them, and Optuna's storages make engines of their own, so
    their pooled connections stay open until garbage collection; over a session of hundreds of
    tests they can fill the server's connection slots ("too many clients")."""
    names = [make_url(url).database for url in urls]
    with psycopg.connect(plain(server_url), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
            (names,),
        )
