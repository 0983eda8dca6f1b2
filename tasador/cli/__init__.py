"""The `tasador` command: the user's single entry point."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tasador import startup
from tasador.cli.context import friendly_errors, resolved_settings
from tasador.cli.db import db_app
from tasador.cli.decide import decide_command
from tasador.cli.lineage import lineage_command
from tasador.cli.monitor import monitor_command
from tasador.cli.promote import promote_command
from tasador.cli.reproduce import reproduce_command
from tasador.cli.rollback import rollback_command
from tasador.cli.scoring import scoring_artifacts_command
from tasador.cli.search import search_command
from tasador.cli.serve import serve_command
from tasador.cli.ui import ui_command
from tasador.core import db
from tasador.core.config import Settings, get_settings
from tasador.core.db import DatabaseKind
from tasador.core.errors import Conflict
from tasador.core.process import prepare_process

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def command(name: str) -> Callable[[F], F]:
    """Register a command whose Tasador errors become a sentence and an exit code."""

    def register(function: F) -> F:
        app.command(name)(friendly_errors(function))
        return function

    return register


@app.callback()
def main(ctx: typer.Context) -> None:
    """The `tasador` command: the user's single entry point."""
    prepare_process()
    # The command owns the engines it makes: disposed of when it ends, however it ends.
    ctx.with_resource(db.owning_engines())


def _clean_and_report(settings: Settings, batch_id: int) -> None:
    """Clean a stored RAW batch into CLEAN and say how many rows it kept."""
    from tasador.loop import ingest

    report = ingest.clean(settings.databases, batch_id)
    typer.echo(f"cleaned: {report.rows_out} of {report.rows_in} rows kept")


@command("collect")
def collect_command(
    api_url: Annotated[str | None, typer.Option(help="Data API base URL.")] = None,
    group: Annotated[int | None, typer.Option(min=1, max=10, help="Group number.")] = None,
    day: Annotated[str | None, typer.Option(help="Tuesday or Wednesday (later editions).")] = None,
    clean: Annotated[bool, typer.Option(help="Also clean the batch into CLEAN.")] = True,
) -> None:
    """Fetch the next batch of a group into RAW (and clean it into CLEAN)."""
    from tasador.loop import ingest  # each command imports what it runs: fast start-up

    settings = resolved_settings(("raw", "clean"), mlflow=False)
    result = ingest.collect(settings, api_url, group, day)
    if result.outcome == "exhausted":
        typer.echo("no new batch: the data API has served every batch of this group")
        return
    verb = "stored" if result.outcome == "stored" else "already stored (nothing new written)"
    source = " (kept from an earlier collect)" if result.from_inbox else ""
    typer.echo(
        f"batch {result.batch_number}{source} -> RAW batch id {result.batch_id}: "
        f"{result.row_count} rows {verb}"
    )
    if result.rejected_count:
        typer.echo(
            f"{result.rejected_count} rows could not be stored as columns: see rejected_rows"
        )
    if result.gaps:
        typer.echo(
            f"skipped batch numbers {', '.join(map(str, result.gaps))}: run "
            f"`tasador recover --group {group or settings.data_api.group_number}`"
        )
    if clean and result.batch_id is not None:
        _clean_and_report(settings, result.batch_id)


@command("recover")
def recover_command(
    group: Annotated[int, typer.Option(min=1, max=10, help="Group number.")],
    day: Annotated[str | None, typer.Option(help="Tuesday or Wednesday (later editions).")] = None,
    api_url: Annotated[str | None, typer.Option(help="Data API base URL.")] = None,
    clean: Annotated[bool, typer.Option(help="Also clean the recovered batches.")] = True,
) -> None:
    """Fill skipped batch numbers: restart the group on the data API and replay its sequence."""
    from tasador.loop import ingest

    settings = resolved_settings(("raw", "clean"), mlflow=False)
    result = ingest.recover(settings, group, day, api_url)
    if not result.stored and not result.still_missing:
        typer.echo(f"no skipped batches for group {group}")
        return
    for batch in result.stored:
        typer.echo(
            f"batch {batch.batch_number} -> RAW batch id {batch.batch_id}: "
            f"{batch.row_count} rows recovered"
        )
        if clean and batch.batch_id is not None:
            _clean_and_report(settings, batch.batch_id)
    if result.still_missing:
        raise Conflict(
            f"the replay did not serve batch numbers {', '.join(map(str, result.still_missing))}"
            " (is the data API's sequence deterministic?); they stay recorded as gaps"
        )


@command("clean")
def clean_command(batch: Annotated[int, typer.Option(help="RAW batch id.")]) -> None:
    """Clean (again) one stored RAW batch into CLEAN."""
    from tasador.loop import ingest

    report = ingest.clean(resolved_settings(("raw", "clean"), mlflow=False).databases, batch)
    typer.echo(json.dumps(report.as_dict(), indent=2))


@command("status")
def status_command(
    table: Annotated[
        bool, typer.Option("--table/--json", help="A readable table, or JSON (the default).")
    ] = False,
    models: Annotated[bool, typer.Option(help="Also list model versions (asks MLflow).")] = True,
) -> None:
    """Show batches (cleaning figures, decisions) and model versions."""
    from tasador.loop.status import alias_table, batches_table, gaps_text, models_table, status

    databases: tuple[DatabaseKind, ...] = ("raw", "clean", "optuna") if models else ("raw", "clean")
    report = status(resolved_settings(databases, mlflow=models), models=models)
    if table:
        typer.echo(batches_table(report.batches))
        if report.gaps:
            typer.echo("\n" + gaps_text(report.gaps))
        if report.models is not None:
            typer.echo(f"\nmodels of {report.model_name} (MLflow {report.mlflow_tracking_uri})")
            typer.echo(models_table(report.models))
        if report.alias_history:
            typer.echo(f"\nhistory of @{get_settings().mlflow.production_alias}")
            typer.echo(alias_table(report.alias_history))
    else:
        typer.echo(report.model_dump_json(indent=2, exclude_none=True))


@command("datasource")
def datasource_command(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    scenario: Annotated[
        str | None, typer.Option(help="Shipped scenario name or a YAML file path.")
    ] = None,
    scale: Annotated[float | None, typer.Option(min=0.0001, help="Batch size factor.")] = None,
    csv: Annotated[Path | None, typer.Option(help="Serve a realtor-data CSV instead.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the generator.")] = None,
) -> None:
    """Serve listings in batches, compatible with the course data API."""
    from datasource.api import create_app, serve  # imported when used: other commands start fast

    settings = get_settings()
    app = create_app(
        scenario=scenario or settings.datasource.datasource_scenario,
        scale=scale or settings.datasource.datasource_scale,
        csv=csv or settings.datasource.datasource_csv,
        state_dir=settings.state_dir / "datasource",
        seed=settings.datasource.datasource_seed if seed is None else seed,
    )
    serve(app, port=port, host=host)


@command("demo")
def demo_command(
    scenario: Annotated[str, typer.Option(help="Data API scenario.")] = "course",
    scale: Annotated[float, typer.Option(min=0.0001, help="Batch size factor.")] = 0.01,
    group: Annotated[int, typer.Option(min=1, max=10)] = 1,
    trials: Annotated[int, typer.Option(min=1, help="Trial budget of each study.")] = 12,
    workers: Annotated[int, typer.Option(min=1, help="Search workers (mapped tasks).")] = 2,
) -> None:
    """Run the whole loop through Airflow on embedded defaults; print a per-batch table."""
    from tasador.demo import run_demo  # imported when used (Airflow helpers, MLflow)

    run_demo(resolved_settings(), scenario, scale, group, trials, workers)


@command("stop-embedded")
def stop_embedded_command() -> None:
    """Stop the embedded MLflow server and PostgreSQL (they otherwise keep running between
    commands)."""
    settings = get_settings()
    mlflow_stopped = startup.stop_server(settings)
    pg_stopped = startup.stop(settings.pg_dir)
    typer.echo(f"MLflow: {'stopped' if mlflow_stopped else 'not running'}")
    typer.echo(f"PostgreSQL: {'stopped' if pg_stopped else 'not running'}")


command("decide")(decide_command)
command("lineage")(lineage_command)
command("monitor")(monitor_command)
command("promote")(promote_command)
command("reproduce")(reproduce_command)
command("rollback")(rollback_command)
command("scoring-artifacts")(scoring_artifacts_command)
command("search")(search_command)
command("serve")(serve_command)
command("ui")(ui_command)
app.add_typer(db_app, name="db")
