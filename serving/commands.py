"""`tasador serve`: the prediction API."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from tasador.config import get_settings


def fail_fast_clients() -> None:
    """For long-running services: MLflow and PostgreSQL calls fail in seconds, not minutes.

    Serving polls the registry again every few seconds and the UI shows a message, so MLflow's
    own retries (minutes of backoff) would only hide an outage.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    os.environ.setdefault("PGCONNECT_TIMEOUT", "5")


def serve_command(
    host: Annotated[
        str, typer.Option(help="Interface to bind (0.0.0.0: every one).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the production model over HTTP; follows the alias without a restart."""
    from serving.api import serve

    fail_fast_clients()
    serve(host, port, get_settings())
