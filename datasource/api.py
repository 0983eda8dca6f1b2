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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from datasource.csv_source import CsvSource
from datasource.cursors import CursorStore, Exhausted
from datasource.scenarios import Scenario, load_scenario
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


RowFormat = Annotated[
    Literal["records", "list"],
    Query(
        alias="format", description="rows as objects keyed by column, or as lists in column order"
    ),
]


@dataclass(frozen=True)
class Feed:
    """What one app serves: the batches of a source, each group's cursor, and their counters."""

    plan: Scenario
    source: BatchSource
    sizes: list[int]
    cursors: CursorStore
    origin: str  # the CSV's path, or "generator"
    scale: float
    seed: int
    # Each app has its own registry, so several apps in one process (tests) count apart.
    registry: CollectorRegistry
    requests: Counter
    rows_served: Counter


def _feed(request: Request) -> Feed:
    feed: Feed = request.app.state.feed
    return feed


FeedDep = Annotated[Feed, Depends(_feed)]
router = APIRouter()


@router.get("/data")
def data(
    feed: FeedDep, group_number: Group, day: Day = None, row_format: RowFormat = "records"
) -> Response:
    started = time.perf_counter()
    try:
        number, frame = feed.cursors.serve_next(
            group_number, day, len(feed.sizes), lambda k: feed.source.batch(group_number, day, k)
        )
    except Exhausted:
        raise HTTPException(status_code=400, detail=EXHAUSTED_DETAIL) from None
    feed.rows_served.labels(str(group_number)).inc(len(frame))
    body = _batch_json(group_number, day, number, frame, row_format)
    elapsed = time.perf_counter() - started
    log.info(
        "group %s day %s: batch %s, %s rows, %.2fs", group_number, day, number, len(frame), elapsed
    )
    return Response(content=body, media_type="application/json")


@router.get("/restart_data_generation")
def restart_data_generation(feed: FeedDep, group_number: Group, day: Day = None) -> dict[str, bool]:
    feed.cursors.restart(group_number, day)
    return {"ok": True}


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "OK"}


@router.get("/metrics")
def metrics(feed: FeedDep) -> Response:
    return Response(generate_latest(feed.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/")
def describe(feed: FeedDep) -> dict[str, object]:
    return {
        "service": "tasador data API",
        "scenario": feed.plan.name,
        "description": feed.plan.description,
        "source": feed.origin,
        "scale": feed.scale,
        "seed": feed.seed,
        "batches": [
            {"batch_number": i, "name": spec.name, "rows": rows}
            for i, (spec, rows) in enumerate(zip(feed.plan.batches, feed.sizes, strict=True))
        ],
    }


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
    registry = CollectorRegistry()
    feed = Feed(
        plan=plan,
        source=source,
        sizes=source.batch_sizes(),
        cursors=CursorStore(state_dir / "cursors.sqlite3", source.key),
        origin=str(csv) if csv else "generator",
        scale=scale,
        seed=seed,
        registry=registry,
        requests=Counter(
            "datasource_requests", "HTTP requests", ["path", "status"], registry=registry
        ),
        rows_served=Counter(
            "datasource_rows_served", "Rows served in batches", ["group"], registry=registry
        ),
    )
    app = FastAPI(
        title="Tasador data API",
        description="Realtor listings in batches, compatible with the course API.",
    )
    app.state.feed = feed

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        feed.requests.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    app.include_router(router)
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
