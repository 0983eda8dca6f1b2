"""`make demo`: the whole loop through Airflow on embedded defaults, batch by batch.

It starts the data API and an embedded MLflow server, runs the ingestion DAG for every batch of
the scenario and the training DAG for every retrain decision (both with `airflow dags test`, so
no scheduler is needed), then prints a per-batch table. Everything it leaves is under the state
folder, so `tasador status` and the UI can read it afterwards; running it again changes nothing.
"""

from __future__ import annotations

import textwrap
import time
from contextlib import AbstractContextManager
from typing import Any

import httpx
import typer

from tasador import local_airflow
from tasador.core import db, migrations, services
from tasador.core.config import Settings
from tasador.loop.status import batch_status, render_table


def run_demo(
    settings: Settings, scenario: str, scale: float, group: int, trials: int, workers: int
) -> None:
    """Serve a scenario from a local data API and run the DAGs on each batch until none is left."""
    started = time.monotonic()
    port = services.free_port()
    api_url = f"http://127.0.0.1:{port}"
    settings = settings.model_copy(
        update={
            "data_api_url": api_url,
            "group_number": group,
            "search_trials": trials,
            "search_workers": workers,
        }
    )
    uri = settings.mlflow_tracking_uri
    typer.echo(f"state: {settings.state_dir.resolve()}/  MLflow: {uri}")
    typer.echo(f"data API: scenario {scenario}, scale {scale}, group {group}, on {api_url}")
    local_airflow.migrate(settings)
    # The DAGs' tasks only read and write: the schema must be current before the first one.
    for database in ("raw", "clean"):
        migrations.upgrade(db.database_url(database, settings), database)
    command = services.tasador_command(
        "datasource", "--port", str(port), "--scenario", scenario, "--scale", str(scale)
    )
    log = settings.state_dir / "logs" / "datasource.log"
    results = []
    with services.running(command, f"{api_url}/health", log):
        # Start the group from its first batch so the demo can be run again.
        httpx.get(f"{api_url}/restart_data_generation", params={"group_number": group})
        while True:
            ingestion = local_airflow.run_dag(settings, "tasador_ingestion")
            if ingestion.task_states.get("collect") == "skipped":
                break
            decision = ingestion.returns["decide"]
            training = None
            if decision["verdict"] == "retrain":
                with search_progress(settings, decision["decision_id"]):
                    run = local_airflow.run_dag(
                        settings, "tasador_training", {"decision_id": decision["decision_id"]}
                    )
                training = run.returns["champion_challenger"]
            results.append((decision, training))
            typer.echo(
                f"  batch {decision['batch_id']}: {decision['verdict']}"
                + (
                    f", version {training['version']} "
                    f"{'promoted' if training['promoted'] else 'not promoted'}"
                    if training
                    else ""
                )
            )
    typer.echo("")
    typer.echo(summary_table(settings, results))
    typer.echo(
        f"\nfinished in {time.monotonic() - started:.0f}s; "
        "`tasador status --table` shows the same state, `tasador ui` the pages"
    )


def search_progress(settings: Settings, decision_id: int) -> AbstractContextManager[None]:
    """Trials done, best so far and time left of the decision's study while Airflow runs it."""
    from experiments.progress import watching
    from experiments.study import study_name_for
    from tasador.loop.training import training_batches

    name = study_name_for(training_batches(settings, decision_id), settings.model_name)
    return watching(settings, name, typer.echo)


def summary_table(
    settings: Settings, results: list[tuple[dict[str, Any], dict[str, Any] | None]]
) -> str:
    """A table of each batch's rows, decision and training outcome, then each decision's reason."""
    batches = {b.batch_id: b for b in batch_status(settings)}
    # Batch ids (what decisions and lineage tags name) first; the data API's number beside it.
    lines = [
        (
            "batch",
            "number",
            "received",
            "clean",
            "decision",
            "best family",
            "holdout RMSLE",
            "version",
        )
    ]
    reasons = []
    for decision, training in results:
        batch = batches[decision["batch_id"]]
        lines.append(
            (
                str(batch.batch_id),
                str(batch.batch_number),
                str(batch.rows_received),
                str(batch.rows_clean),
                decision["verdict"],
                training["family"] if training else "-",
                f"{training['holdout_rmsle']:.4f}" if training else "-",
                (f"v{training['version']} " + ("promoted" if training["promoted"] else "kept out"))
                if training
                else "-",
            )
        )
        reason = batch.decision.reason if batch.decision else ""
        reasons.append(
            textwrap.fill(f"batch {batch.batch_id}: {reason}", width=100, subsequent_indent="  ")
        )
        if training:
            reasons.append(
                textwrap.fill(
                    training["summary"], width=100, initial_indent="  ", subsequent_indent="  "
                )
            )
    return render_table(lines) + "\n\nwhy:\n" + "\n".join(reasons)
