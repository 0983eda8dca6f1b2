"""`tasador decide`: the retrain decision of one batch, with its reason."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tasador.cli.context import resolved_settings


def decide_command(
    batch: Annotated[int, typer.Option(help="Batch id (as in `tasador status`).")],
    force: Annotated[
        bool, typer.Option(help="Retrain whatever the evidence says (recomputed and re-stored).")
    ] = False,
    evidence: Annotated[
        bool, typer.Option("--evidence", help="Also print the evidence as JSON.")
    ] = False,
) -> None:
    """Decide from evidence whether a cleaned batch calls for retraining, and say why."""
    from tasador.loop.decide import decide_batch  # imported when used: MLflow, scikit-learn

    decision = decide_batch(resolved_settings(("clean",)), batch, force)
    typer.echo(f"batch {decision.batch_id}: {decision.verdict} (decision {decision.id})")
    typer.echo(decision.reason)
    if evidence:
        typer.echo(json.dumps(decision.evidence, indent=2))
