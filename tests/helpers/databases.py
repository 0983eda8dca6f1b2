"""The test PostgreSQL: plain driver URLs and closing what a test left connected."""

from __future__ import annotations

import psycopg
from sqlalchemy.engine import make_url


def plain(url: str) -> str:
    """``url`` for psycopg itself (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def disconnect(server_url: str, *urls: str) -> None:
    """End every session still connected to the databases at ``urls``.

    For connections that no engine of ``tasador.core.db`` holds, so no owner disposes of them:
    Optuna's storages (``experiments.study.storage``) make engines of their own, whose pooled
    connections close only when the storage is garbage-collected."""
    names = [make_url(url).database for url in urls]
    with psycopg.connect(plain(server_url), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
            (names,),
        )
