"""`tasador lineage`: where a prediction, a model version or a batch came from and went."""

from __future__ import annotations

from typing import Annotated

import typer

from tasador.cli.context import resolved_settings
from tasador.core.errors import BadInput
from tasador.loop import provenance


def lineage_command(
    request: Annotated[
        str | None, typer.Option(help="A logged request: its row id or its request UUID.")
    ] = None,
    version: Annotated[int | None, typer.Option(min=1, help="A model version number.")] = None,
    batch: Annotated[
        int | None, typer.Option(help="A RAW batch id (as in `tasador status`).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
) -> None:
    """Print the chain request -> model version -> training run, study and decision -> batches."""
    given = [
        name
        for name, value in (("--request", request), ("--version", version), ("--batch", batch))
        if value is not None
    ]
    if len(given) != 1:
        raise BadInput("give exactly one of --request, --version, --batch")
    settings = resolved_settings(("raw", "clean"))
    if request is not None:
        found = provenance.request_lineage(settings, request)
        if as_json:
            typer.echo(found.model_dump_json(indent=2))
            return
        for r in found.requests:
            row = f" row {r.row_index}" if r.row_index is not None else ""
            price = "-" if r.prediction is None else f"${r.prediction:,.0f}"
            typer.echo(
                f"request {r.id}{row} ({r.request_id or '-'}) {r.requested_at:%Y-%m-%d %H:%M:%S} "
                f"{r.endpoint} -> {r.status_code}, {price}"
            )
        if found.version is None:
            typer.echo("no model version answered this request")
        else:
            typer.echo("\n".join(provenance.describe(found.version)))
    elif version is not None:
        chain = provenance.version_chain(settings, version)
        typer.echo(
            chain.model_dump_json(indent=2) if as_json else "\n".join(provenance.describe(chain))
        )
    else:
        assert batch is not None
        learned = provenance.batch_lineage(settings, batch)
        if as_json:
            typer.echo(learned.model_dump_json(indent=2))
            return
        b = learned.batch
        typer.echo(
            f"batch {b.batch_id} (number {b.batch_number}, {b.rows} rows) sha256 {b.payload_sha256}"
        )
        if not learned.versions:
            typer.echo("no model version learned from this batch yet")
        for chain in learned.versions:
            typer.echo("\n".join(provenance.describe(chain)))
