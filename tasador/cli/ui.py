"""`tasador ui`: the Streamlit app."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

import app
from tasador.cli.context import export, resolved_settings
from tasador.core.process import prepare_process

MAIN = Path(app.__file__).resolve().parent / "main.py"


def streamlit_args(host: str, port: int) -> list[str]:
    """The command line that runs the Streamlit app headless on host:port, error details hidden."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(MAIN),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--client.showErrorDetails",
        "none",  # people see our messages, never a stack trace
    ]


def ui_command(
    host: Annotated[
        str, typer.Option(help="Interface to bind (0.0.0.0: every one).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8501,
) -> None:
    """Open the UI: predict a price, see the models and the batches."""
    prepare_process(service=True)
    export(resolved_settings(("raw", "clean")))
    args = streamlit_args(host, port)
    os.execv(args[0], args)  # Streamlit becomes this process: signals reach it directly
