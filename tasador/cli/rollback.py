"""`tasador rollback`: put the previous (or a named) model version back in production."""

from __future__ import annotations

from typing import Annotated

import typer

from tasador.cli.context import resolved_settings


def rollback_command(
    to: Annotated[
        int | None, typer.Option(min=1, help="The version to restore (default: the previous one).")
    ] = None,
    reason: Annotated[
        str, typer.Option(help="Why (kept in the alias history).")
    ] = "rolled back by an operator (tasador rollback)",
) -> None:
    """Move the production alias back in one call, under the promotion lock, with an audit row."""
    from experiments.rollback import rollback  # imported when used: MLflow, scikit-learn

    settings = resolved_settings(("clean",))
    move = rollback(settings, reason, to)
    typer.echo(
        f"{move.model_name}@{move.alias}: version {move.previous_version} -> {move.version} "
        f"({move.reason}); serving follows within {settings.serving.serving_poll_s:g} s"
    )
