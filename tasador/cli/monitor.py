"""`tasador monitor`: the live drift of the requests served since the last check."""

from __future__ import annotations

import typer

from tasador.cli.context import resolved_settings


def monitor_command() -> None:
    """Compare the requests served since the last check with the production model's training
    rows (the statistics and limits of retrain decisions); store and say the result."""
    from tasador.loop.monitor import check_live_drift  # imported when used: MLflow, scipy

    outcome = check_live_drift(resolved_settings(("raw", "clean")))
    check = outcome.check
    if check is not None:
        verdict = "ALARM" if check.alarm else "no alarm"
        where = f"check {check.check_id}" if outcome.stored else "not stored again"
        typer.echo(f"live drift: {verdict} ({check.rows:,} requests; {where})")
    typer.echo(outcome.summary)
