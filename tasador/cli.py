"""The `tasador` command: the user's single entry point."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)

# Each capability registers its commands here (one line each).
