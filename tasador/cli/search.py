"""`tasador search`: a retraining from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from tasador.cli.context import resolved_settings
from tasador.core import lineage


def search_command(
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes sharing the study.")
    ] = None,
    trials: Annotated[
        int | None, typer.Option(min=1, help="Finished trials wanted, all workers together.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="Seconds the search may take, all workers together.")
    ] = None,
    batches: Annotated[
        str | None, typer.Option(help="RAW batch ids to train on, e.g. 1,2,3 (default: all).")
    ] = None,
    families: Annotated[
        str | None, typer.Option(help="Search only these families, e.g. xgboost,lightgbm.")
    ] = None,
    decision: Annotated[
        int | None, typer.Option(help="Retrain decision id (its reason goes on the runs).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why retrain, if no decision id.")] = None,
) -> None:
    """Search model families with N workers, refit the best, promote it if it wins."""
    # Heavy (MLflow, SHAP, boosters): imported when used, so other commands start fast.
    from tasador.core.names import REPORT_FILE  # numpy, through the metric's definition
    from tasador.loop.training import retrain

    settings = resolved_settings(("raw", "clean", "optuna"))  # RAW: shadow rows (report, gate)
    # Library noise goes to the file; the terminal gets progress and the outcome.
    log_file = settings.state_dir / "logs" / "search.log"
    typer.echo(f"library output: {log_file}", err=True)
    result = retrain(
        settings,
        lineage.decode_batch_ids(batches) or None,
        workers=workers,
        n_trials=trials,
        timeout_s=timeout,
        decision_id=decision,
        reason=reason,
        families=families.split(",") if families else None,
        echo=lambda line: typer.echo(line, err=True),
        log_file=log_file,
    )
    typer.echo(result.comparison().to_string(index=False))
    typer.echo(result.summary)
    typer.echo(result.shap_sentence)
    typer.echo(f"study {result.study_name}; report: run {result.run_id} {REPORT_FILE}")
