"""Database URLs and engines: the configured server, or a database of the embedded one."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import sqlalchemy as sa

from tasador import embedded
from tasador.config import Settings, get_settings

DatabaseKind = Literal["raw", "clean", "optuna", "mlflow"]

EMBEDDED_NAMES: dict[DatabaseKind, str] = {
    "raw": "tasador_raw",
    "clean": "tasador_clean",
    "optuna": "tasador_optuna",
    "mlflow": "tasador_mlflow",
}


def database_url(kind: DatabaseKind, settings: Settings | None = None) -> str:
    """The plain ``postgresql://`` URL of one of the project's databases."""
    settings = settings or get_settings()
    configured = getattr(
        settings,
        f"{kind}_db_url"
        if kind in ("raw", "clean")
        else {"optuna": "optuna_storage_url", "mlflow": "mlflow_backend_url"}[kind],
    )
    if configured is not None:
        return configured.get_secret_value()
    return embedded.database_url(settings.pg_dir, EMBEDDED_NAMES[kind])


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


@lru_cache(maxsize=16)
def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True, future=True)


def engine(kind: DatabaseKind, settings: Settings | None = None) -> sa.Engine:
    return engine_for(database_url(kind, settings))
