"""The data API: the course API's contract over a scenario of generated listings or a CSV.

``GET /data?group_number=N[&day=D][&format=list]`` serves the group's next batch,
``GET /restart_data_generation`` starts the group again, ``GET /health`` and ``GET /metrics``
are for operators, ``GET /`` describes what is being served.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from datasource.csv_source import CsvSource
from datasource.cursors import CursorStore, Exhausted
from datasource.scenarios import load_scenario
from datasource.sources import BatchSource, ScenarioSource
from tasador.core.config import Settings, get_settings
from tasador.core.errors import BadInput

log = logging.getLogger(__name__)

# The course API's answer once a group has had every batch (HTTP 400).
EXHAUSTED_DETAIL = "Ya se recolectó toda la información mínima necesaria"
DEFAULT_SCALE: float = Settings.flat_fields()["datasource_scale"].default
DEFAULT_SEED: int = Settings.flat_fields()["datasource_seed"].default

Group = Annotated[int, Query(ge=1, le=10, description="the group's number, 1 to 10")]
Day = Annotated[
    Literal["Tuesday", "Wednesday"] | None,
    Query(description="later course editions keep one sequence per day"),
]


def create_app(
    scenario: str | Path = "course",
    scale: float = DEFAULT_SCALE,
    csv: Path | None = None,
    state_dir: Path | None = None,
    seed: int = DEFAULT_SEED,
) -> FastAPI:
    """The app serving ``scenario`` (a shipped name or a YAML path), or ``csv`` split by it.

    Cursors live in ``state_dir`` (default ``<settings.state_dir>/datasource``), which also holds
    the spill files of CSV mode. A CSV is partitioned here, before the app answers anything.
    """
    if seed < 0:
        raise BadInput(f"seed must be >= 0, not {seed}")
    state_dir = Path(state_dir) if state_dir else get_settings().state_dir / "datasource"
    plan = load_scenario(scenario)
    source: BatchSource = (
        CsvSource(Path(csv), plan, scale, seed, state_dir)
        if csv
        else ScenarioSource(plan, scale, seed)
    )
    sizes = source.batch_sizes()
    cursors = CursorStore(state_dir / "cursors.sqlite3", source.key)

    registry = CollectorRegistry()
    requests = Counter(
        "datasource_requests", "HTTP requests", ["path", "status"], registry=registry
    )
    rows_served = Counter(
        "datasource_rows_served", "Rows served in batches", ["group"], registry=registry
    )

    app = FastAPI(
        title="Tasador data API",
        description="Realtor listings in batches, compatible with the course API.",
    )

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        requests.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    @app.get("/data")
    def data(
        group_number: Group,
        day: Day = None,
        row_format: Annotated[
            Literal["records", "list"],
            Query(
                alias="format",
                description="rows as objects keyed by column, or as lists in column order",
            ),
        ] = "records",
    ) -> Response:
        started = time.perf_counter()
        try:
            number, frame = cursors.serve_next(
                group_number, day, len(sizes), lambda k: source.batch(group_number, day, k)
            )
        except Exhausted:
            raise HTTPException(status_code=400, detail=EXHAUSTED_DETAIL) from None
        rows_served.labels(str(group_number)).inc(len(frame))
        body = _batch_json(group_number, day, number, frame, row_format)
        elapsed = time.perf_counter() - started
        log.info(
            "group %s day %s: batch %s, %s rows, %.2fs",
            group_number,
            day,
            number,
            len(frame),
            elapsed,
        )
        return Response(content=body, media_type="application/json")

    @app.get("/restart_data_generation")
    def restart_data_generation(group_number: Group, day: Day = None) -> dict[str, bool]:
        cursors.restart(group_number, day)
        return {"ok": True}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "OK"}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/")
    def describe() -> dict[str, object]:
        return {
            "service": "tasador data API",
            "scenario": plan.name,
            "description": plan.description,
            "source": str(csv) if csv else "generator",
            "scale": scale,
            "seed": seed,
            "batches": [
                {"batch_number": i, "name": spec.name, "rows": rows}
                for i, (spec, rows) in enumerate(zip(plan.batches, sizes, strict=True))
            ],
        }

    return app


def _batch_json(group: int, day: str | None, number: int, frame: pd.DataFrame, fmt: str) -> str:
    # pandas writes NaN as null and keeps floats as floats (27253.0), like the course API.
    rows = frame.to_json(orient="records" if fmt == "records" else "values", force_ascii=False)
    head = json.dumps({"group_number": group, "day": day, "batch_number": number})
    return f'{head[:-1]}, "data": {rows}}}'


def serve(app: FastAPI, port: int, host: str = "127.0.0.1") -> None:
    """Run a data API app (made by :func:`create_app`, so a CSV is split before the server
    listens) with uvicorn until interrupted."""
    uvicorn.run(app, host=host, port=port, log_level="info")
