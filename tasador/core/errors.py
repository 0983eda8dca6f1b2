"""The errors Tasador raises on purpose, by what the caller can do about them.

The command line turns each class into a sentence and an exit code (``tasador.cli``); any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class TasadorError(Exception):
    """Base of every error Tasador raises on purpose; its message is a sentence for people."""

    exit_code = 1


class BadInput(TasadorError, ValueError):
    """What the user (or a client) sent cannot be used: a malformed value, file or request."""

    exit_code = 2


class NotFound(TasadorError, LookupError):
    """A batch, decision, version or study the caller named does not exist."""

    exit_code = 3


class NotConfigured(TasadorError):
    """A setting the operation needs is unset (library code never starts a server to fill it)."""

    exit_code = 4


class ServiceUnavailable(TasadorError):
    """A service Tasador depends on (PostgreSQL, MLflow, the data API) cannot be reached."""

    exit_code = 5


class Conflict(TasadorError):
    """The operation contradicts stored state (another writer, a changed plan, a finished run)."""

    exit_code = 6


def summary(exc: BaseException, limit: int = 300) -> str:
    """An error in one line for a status field or a log: ``Type: first line of the message``,
    at most ``limit`` characters (tracebacks and multi-line driver messages stay in the log)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:limit]
