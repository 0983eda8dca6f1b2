"""`make demo`: the loop so far, on embedded defaults, printed as a per-batch table."""

from __future__ import annotations

import httpx
import typer

from tasador import ingest, services
from tasador.config import Settings
from tasador.status import render_table


def run_demo(settings: Settings, scenario: str, scale: float, group: int) -> None:
    port = services.free_port()
    api_url = f"http://127.0.0.1:{port}"
    command = services.tasador_command(
        "datasource",
        "--port",
        str(port),
        "--scenario",
        scenario,
        "--scale",
        str(scale),
    )
    log = settings.state_dir / "logs" / "datasource.log"
    typer.echo(f"data API ({scenario}, scale {scale}) on {api_url}; state in {settings.state_dir}/")
    with services.running(command, f"{api_url}/health", log):
        # Start the group from its first batch so the demo can be run again.
        httpx.get(
            f"{api_url}/restart_data_generation", params={"group_number": group}
        ).raise_for_status()
        lines = [("batch", "raw id", "received", "stored", "clean", "dropped / fixed")]
        while True:
            result = ingest.collect_and_clean(settings, api_url, group)
            if result.collected.outcome == "exhausted":
                break
            report = result.report
            assert report is not None
            dropped = sum(report.dropped.values())
            fixed = sum(report.fixed.values())
            lines.append(
                (
                    str(result.collected.batch_number),
                    str(result.collected.batch_id),
                    str(result.collected.row_count),
                    "new" if result.collected.outcome == "stored" else "already stored",
                    str(report.rows_out),
                    f"{dropped} / {fixed}",
                )
            )
    typer.echo(render_table(lines))
    typer.echo(
        "the data API has no more batches for this group; `tasador status --table` shows them"
    )
