"""`tasador serve`: the prediction API."""

from __future__ import annotations

from typing import Annotated

import typer

from tasador.cli.context import resolved_settings
from tasador.core.process import prepare_process


def serve_command(
    host: Annotated[
        str, typer.Option(help="Interface to bind (0.0.0.0: every one).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the production model over HTTP; follows the alias without a restart."""
    from serving.api import serve  # heavy (MLflow, the model libraries): only when serving

    prepare_process(service=True)
    serve(host, port, resolved_settings(("raw",)))
