"""What every command shares: the settings with every service resolved, and the error mapping."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any, TypeVar

import typer
from pydantic import ValidationError

from tasador import startup
from tasador.core import db, migrations
from tasador.core.config import DatabaseSettings, Settings, get_settings, settings_env
from tasador.core.db import DatabaseKind
from tasador.core.errors import BadInput, TasadorError

F = TypeVar("F", bound=Callable[..., Any])


def resolved_settings(
    databases: Iterable[DatabaseKind] = ("raw", "clean", "optuna"),
    mlflow: bool = True,
    migrate: bool = True,
) -> Settings:
    """The settings, with an embedded PostgreSQL (and MLflow server) for every URL the
    command uses and the environment leaves unset; with ``migrate``, the RAW and CLEAN among
    ``databases`` upgraded to the newest schema (:func:`upgrade_databases`)."""
    databases = tuple(databases)
    settings = startup.resolve(get_settings(), databases, mlflow)
    if migrate:
        upgrade_databases(settings.databases, [d for d in databases if d in ("raw", "clean")])
    return settings


def upgrade_databases(
    database_settings: DatabaseSettings,
    databases: Iterable[migrations.Database] = ("raw", "clean"),
) -> dict[migrations.Database, str]:
    """Upgrade RAW and CLEAN to the newest revision; return each one's revision.

    Every command runs it (it is quick when there is nothing to do), so the stores, which no
    longer create tables, always find the schema they expect."""
    return {
        database: migrations.upgrade(db.database_url(database, database_settings), database)
        for database in databases
    }


def export(settings: Settings) -> None:
    """Hand resolved settings to a process this one becomes or starts (Streamlit, Airflow)."""
    os.environ.update(settings_env(settings))


def friendly_errors(command: F) -> F:
    """Turn Tasador's own errors, and settings the environment gives wrong, into one red
    sentence and the error class's exit code; anything else is a bug and keeps its traceback."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TasadorError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except ValidationError as exc:
            if exc.title != Settings.__name__:
                raise
            said = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            typer.secho(f"error: invalid settings: {said}", fg="red", err=True)
            sys.exit(BadInput.exit_code)

    return run  # type: ignore[return-value]
