"""`make demo`: the whole loop through Airflow on embedded defaults, batch by batch.

It starts the data API, a local Airflow (an api-server; the LocalExecutor runs the mapped search
workers at once) and an embedded MLflow server, runs the ingestion DAG for every batch of the
scenario and the training DAG for every retrain decision (`airflow dags test --use-executor`, so
no scheduler is needed), prints how many trials each search worker ran, then a per-batch table.
The data API and Airflow's processes are stopped at the end, on Ctrl-C and on SIGTERM; what it
leaves is under the state folder (the embedded PostgreSQL and MLflow keep running until
`tasador stop-embedded`), so `tasador status` and the UI can read it afterwards; running it
again changes nothing.
"""

from __future__ import annotations

import signal
import textwrap
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FrameType
from typing import Any

import httpx
import typer

from tasador import local_airflow
from tasador.core import db, migrations, services
from tasador.core.config import Settings
from tasador.loop.status import batch_status, render_table

DATA_API_START_S = 180.0  # the data API builds its scenario first: slow on a busy 2-core machine


@contextmanager
def ending_on_sigterm() -> Iterator[None]:
    """A SIGTERM ends the block as Ctrl-C does: by an exception, so every `with` inside it
    stops what it started. A second SIGTERM meanwhile does not cut that clean-up short."""

    def stop(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(
    settings: Settings, scenario: str, scale: float, group: int, trials: int, workers: int
) -> None:
    """Serve a scenario from a local data API and run the DAGs on each batch until none is left."""
    started = time.monotonic()
    port = services.free_port()
    api_url = f"http://127.0.0.1:{port}"
    settings = settings.updated(
        data_api_url=api_url, group_number=group, search_trials=trials, search_workers=workers
    )
    uri = settings.mlflow.mlflow_tracking_uri
    typer.echo(f"state: {settings.state_dir.resolve()}/  MLflow: {uri}")
    typer.echo(f"data API: scenario {scenario}, scale {scale}, group {group}, on {api_url}")
    # The DAGs' tasks only read and write: the schema must be current before the first one.
    for database in ("raw", "clean"):
        migrations.upgrade(db.database_url(database, settings.databases), database)
    command = services.tasador_command(
        "datasource", "--port", str(port), "--scenario", scenario, "--scale", str(scale)
    )
    log = settings.state_dir / "logs" / "datasource.log"
    with (
        ending_on_sigterm(),
        services.running(command, f"{api_url}/health", log, timeout_s=DATA_API_START_S),
        local_airflow.running(settings) as airflow,
    ):
        typer.echo(f"Airflow: {airflow.api_url} (LocalExecutor, {workers} search workers at once)")
        results = run_batches(settings, airflow, api_url, workers)
    typer.echo("")
    typer.echo(summary_table(settings, results))
    typer.echo(
        f"\nfinished in {time.monotonic() - started:.0f}s; "
        "`tasador status --table` shows the same state, `tasador ui` the pages"
    )


def run_batches(
    settings: Settings, airflow: local_airflow.LocalAirflow, api_url: str, workers: int
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """The ingestion DAG for every batch, the training DAG for every retrain decision."""
    # Start the group from its first batch so the demo can be run again.
    httpx.get(
        f"{api_url}/restart_data_generation",
        params={"group_number": settings.data_api.group_number},
    )
    results: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    while True:
        ingestion = airflow.run_dag(settings, "tasador_ingestion")
        if ingestion.task_states.get("collect") == "skipped":
            return results
        decision = ingestion.returns["decide"]
        training = None
        if decision["verdict"] == "retrain":
            study_name = study_of(settings, decision["decision_id"])
            with search_progress(settings, study_name):
                run = airflow.run_dag(
                    settings, "tasador_training", {"decision_id": decision["decision_id"]}
                )
            training = run.returns["champion_challenger"]
            typer.echo(f"  search workers: {worker_trials(settings, study_name, workers)}")
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


def study_of(settings: Settings, decision_id: int) -> str:
    """The name of the study a retrain decision's training runs."""
    from experiments.study import study_name_for
    from tasador.loop.training import training_batches

    return study_name_for(training_batches(settings, decision_id), settings.mlflow.model_name)


def search_progress(settings: Settings, study_name: str) -> AbstractContextManager[None]:
    """Trials done, best so far and time left of the study while Airflow runs it."""
    from experiments.progress import watching

    return watching(settings, study_name, typer.echo)


def worker_trials(settings: Settings, study_name: str, workers: int) -> str:
    """``worker 0: 6 trials, worker 1: 6 trials``, read from the Optuna study."""
    from experiments.progress import describe_workers
    from experiments.study import load_study

    study, _ = load_study(study_name, settings)
    return describe_workers(study, workers)


def summary_table(
    settings: Settings, results: list[tuple[dict[str, Any], dict[str, Any] | None]]
) -> str:
    """A table of each batch's rows, decision and training outcome, then each decision's reason."""
    batches = {b.batch_id: b for b in batch_status(settings.databases)}
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
