"""`tasador reproduce`: rebuild a model version from RAW and say whether it comes out the same."""

from __future__ import annotations

from typing import Annotated

import typer

from tasador.cli.context import resolved_settings
from tasador.core.errors import Conflict


def reproduce_command(
    version: Annotated[int, typer.Option(min=1, help="The model version to rebuild.")],
    tolerance: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Relative tolerance on the holdout RMSLE and on the median price difference "
            "(default TASADOR_REPRODUCE_TOLERANCE, 0.01: 1%).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
) -> None:
    """Rebuild a version's rows from the RAW batches it names (checking their hashes), clean
    them, check the data hash, refit the recorded family, parameters and seed, and compare with
    the registered model on the holdout. Registers, logs and moves nothing."""
    from tasador.loop.reproduce import describe, reproduce  # imported when used: MLflow

    settings = resolved_settings(("raw", "clean", "optuna"))
    result = reproduce(settings, version, tolerance)
    typer.echo(result.model_dump_json(indent=2) if as_json else "\n".join(describe(result)))
    if not result.reproduced:
        raise Conflict(f"version {version} was not reproduced: {result.differences[0]}")
