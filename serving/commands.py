"""`tasador serve`: the prediction API."""

from __future__ import annotations

from typing import Annotated

import typer

from tasador.config import get_settings


def serve_command(
    host: Annotated[
        str, typer.Option(help="Interface to bind (0.0.0.0: every one).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the production model over HTTP; follows the alias without a restart."""
    from serving.api import serve

    serve(host, port, get_settings())
