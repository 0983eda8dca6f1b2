"""`tasador serve`: the prediction API."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from tasador.cli.context import export, resolved_settings
from tasador.core.process import prepare_process


def serve_command(
    host: Annotated[
        str, typer.Option(help="Interface to bind (0.0.0.0: every one).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes (default: serving_workers, else the cores)."),
    ] = None,
) -> None:
    """Serve the production model over HTTP; follows the alias without a restart."""
    prepare_process(service=True)
    settings = resolved_settings(("raw",))
    if workers is not None:
        settings = settings.updated(serving_workers=workers)
    export(settings)
    # Become the serving process (serving.server): same pid, only serving's imports, so the
    # workers it starts carry neither the CLI nor what the other commands need.
    command = [sys.executable, "-m", "serving.server", "--host", host, "--port", str(port)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
