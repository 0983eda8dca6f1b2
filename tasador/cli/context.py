"""What every command shares: the settings with every service resolved, and the error mapping."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any, TypeVar

import typer

from tasador import startup
from tasador.core.config import Settings, get_settings, settings_env
from tasador.core.db import DatabaseKind
from tasador.core.errors import TasadorError

F = TypeVar("F", bound=Callable[..., Any])


def resolved_settings(
    databases: Iterable[DatabaseKind] = ("raw", "clean", "optuna"), mlflow: bool = True
) -> Settings:
    """The settings, with an embedded PostgreSQL (and MLflow server) for every URL the
    command uses and the environment leaves unset."""
    return startup.resolve(get_settings(), databases, mlflow)


def export(settings: Settings) -> None:
    """Hand resolved settings to a process this one becomes or starts (Streamlit, Airflow)."""
    os.environ.update(settings_env(settings))


def friendly_errors(command: F) -> F:
    """Turn Tasador's own errors into one red sentence and the error class's exit code;
    anything else is a bug and keeps its traceback."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TasadorError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)

    return run  # type: ignore[return-value]
