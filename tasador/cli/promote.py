"""`tasador promote --challenger`: promote the challenger that waited for shadow traffic."""

from __future__ import annotations

from typing import Annotated

import typer

from tasador.cli.context import resolved_settings
from tasador.core.errors import BadInput


def promote_command(
    challenger: Annotated[
        bool,
        typer.Option(
            "--challenger",
            help="Re-check the @challenger version: promote it if it only waited for shadow rows "
            "(promotion_min_shadow_rows) and has them now.",
        ),
    ] = False,
) -> None:
    """Promote a challenger held back by the shadow-row gate, once it has the rows."""
    if not challenger:
        raise BadInput(
            "name what to promote: --challenger (otherwise production moves only by training, "
            "which compares on the holdout, or by `tasador rollback`)"
        )
    from experiments.shadow_gate import recheck  # MLflow and the report: only when it runs

    settings = resolved_settings(("raw", "clean"))
    decision = recheck(settings)
    typer.echo(
        f"{decision.model_name}@{settings.mlflow.production_alias}: version "
        f"{decision.challenger_version}. {decision.summary} Serving follows within "
        f"{settings.serving.serving_poll_s:g} s."
    )
