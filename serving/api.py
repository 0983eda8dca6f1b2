"""The prediction API: ``models:/<name>@<alias>`` over HTTP, swapped live when the alias moves.

Endpoints: ``POST /predict`` (one listing or a list), ``POST /explain`` (SHAP for one listing),
``GET /model``, ``GET /health`` (the process answers), ``GET /ready`` (a model is loaded; also
says whether the registry answers), ``GET /metrics`` (Prometheus).

``/predict`` parses its body itself, straight from bytes with pydantic (one pass, no
intermediate ``json.loads``), because it is the hot path and because a body may be an object
or a list: deciding by the first character gives 422s that name fields plainly (``body.bed``,
``body.3.bed``) instead of one error per union branch. The OpenAPI document still describes
the body (``_listing_body``), so clients and the schemathesis tests see the real contract.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from serving.explanations import explain_listing
from serving.hot_swap import ModelWatcher
from serving.inference_log import Entry, InferenceLog
from serving.metrics import ServingMetrics
from serving.models import ModelInfo, ServedModel
from serving.schema import (
    LISTING,
    Explanation,
    Listing,
    Predictions,
    Problem,
    listings_adapter,
)
from tasador.core import db
from tasador.core.config import Settings

logger = logging.getLogger(__name__)

INLINE_ROWS = 64  # larger requests are scored in the thread pool, not on the event loop
BYTES_PER_ROW = 4_096  # a generous listing; bodies beyond max rows times this are refused


def _errors(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors(include_url=False, include_context=False):
        item = {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        if isinstance(error.get("input"), str | int | float | bool | None):
            item["input"] = error["input"]
        errors.append(item)
    return errors


def _invalid(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=422)


class Service:
    """State shared by the endpoints: the model watcher, the inference log, the metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.watcher = ModelWatcher(settings, on_swap=self._swapped)
        self.log = InferenceLog(
            lambda: db.engine("raw", settings),
            settings.state_dir / "serving" / "spool",
            settings.serving_log_buffer_rows,
            settings.serving_log_flush_s,
        )
        self.metrics = ServingMetrics(self.watcher, self.log)
        self.listings = listings_adapter(settings.serving_max_rows)
        self.max_body = settings.serving_max_rows * BYTES_PER_ROW

    def _swapped(self, served: ServedModel) -> None:
        info = served.info
        self.metrics.model_swapped(info.name, info.version, info.alias)

    def parse(self, body: bytes, many: bool = True) -> list[Listing] | JSONResponse:
        """The listings of a body, or the 422 (413) that explains why there are none.

        ``many``: a list of listings is accepted too (``/predict``), not only one object.
        """
        if len(body) > self.max_body:
            return JSONResponse(
                {
                    "detail": f"body over {self.max_body} bytes: send at most "
                    f"{self.settings.serving_max_rows} listings per request"
                },
                status_code=413,
            )
        start = body.lstrip()[:1]
        try:
            if start == b"[" and many:
                return self.listings.validate_json(body)
            if start == b"{":
                return [LISTING.validate_json(body)]
        except ValidationError as exc:
            return _invalid(_errors(exc, ("body",)))
        return _invalid(
            [
                {
                    "loc": ["body"],
                    "msg": "expected a listing (JSON object)"
                    + (" or a list of listings" if many else ""),
                    "type": "body_type",
                }
            ]
        )

    def unavailable(self) -> JSONResponse:
        return JSONResponse({"detail": self.watcher.unavailable_reason()}, status_code=503)

    def finish(
        self,
        endpoint: str,
        response: Response,
        started: float,
        requested_at: datetime,
        body: bytes,
        listings: list[Listing] | None = None,
        predictions: list[float] | None = None,
        served: ServedModel | None = None,
    ) -> Response:
        seconds = time.perf_counter() - started
        self.metrics.observe(endpoint, response.status_code, seconds)
        refused = listings is None
        self.log.record(
            Entry(
                endpoint=endpoint,
                status_code=response.status_code,
                requested_at=requested_at,
                latency_ms=seconds * 1000.0,
                listings=listings or (),
                predictions=predictions,
                model_name=served.info.name if served else None,
                model_version=served.info.version if served else None,
                body=body.decode("utf-8", "replace") if refused else None,
            )
        )
        return response


def _listing_body(max_rows: int | None) -> dict[str, Any]:
    """One listing (``max_rows`` None) or also a list of up to ``max_rows``."""
    listing = {"$ref": "#/components/schemas/Listing"}
    many = {"type": "array", "items": listing, "minItems": 1, "maxItems": max_rows}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": listing if max_rows is None else {"oneOf": [listing, many]},
                "example": {"state": "Texas", "city": "Austin", "bed": 3, "house_size": 1800},
            }
        },
    }


def create_app(settings: Settings) -> FastAPI:
    """The prediction API app; a background watcher hot-swaps the production model."""
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.log.start()
        service.watcher.start()
        try:
            yield
        finally:
            service.watcher.stop()
            service.log.stop()

    app = FastAPI(
        title="Tasador prediction API",
        summary=f"Prices listings with {settings.model_name}@{settings.production_alias}.",
        lifespan=lifespan,
    )
    app.state.service = service
    not_ready: dict[int | str, dict[str, Any]] = {
        503: {"model": Problem, "description": "No model loaded yet (see detail)."}
    }

    @app.post(
        "/predict",
        response_model=Predictions,
        responses={
            **not_ready,
            413: {"model": Problem, "description": "Too many listings in one request."},
            422: {"description": "Invalid listing: each bad field is named in detail[].loc."},
        },
        openapi_extra={"requestBody": _listing_body(settings.serving_max_rows)},
    )
    async def predict(request: Request) -> Response:
        """Price one listing (an object) or several (a list), in the order sent."""
        started, requested_at = time.perf_counter(), datetime.now(UTC)
        body = await request.body()
        listings = service.parse(body)
        if isinstance(listings, Response):
            return service.finish("predict", listings, started, requested_at, body)
        served = service.watcher.current  # read once: this request stays on this model
        if served is None:
            return service.finish("predict", service.unavailable(), started, requested_at, body)
        if len(listings) <= INLINE_ROWS:
            prices = served.scorer.predict(listings)
        else:
            prices = await run_in_threadpool(served.scorer.predict, listings)
        values = np.round(prices, 2).tolist()
        answer = Predictions(predictions=values, model=served.info.ref())
        response = Response(answer.model_dump_json(), media_type="application/json")
        return service.finish(
            "predict", response, started, requested_at, body, listings, values, served
        )

    @app.post(
        "/explain",
        response_model=Explanation,
        responses={
            **not_ready,
            422: {"description": "Invalid listing: each bad field is named in detail[].loc."},
        },
        openapi_extra={"requestBody": _listing_body(None)},
    )
    async def explain(request: Request) -> Response:
        """SHAP contributions for one listing, from the model version that prices it."""
        started, requested_at = time.perf_counter(), datetime.now(UTC)
        body = await request.body()
        listings = service.parse(body, many=False)
        if isinstance(listings, Response):
            return service.finish("explain", listings, started, requested_at, body)
        served = service.watcher.current
        if served is None:
            return service.finish("explain", service.unavailable(), started, requested_at, body)
        answer = await run_in_threadpool(explain_listing, served, listings[0])
        response = Response(answer.model_dump_json(), media_type="application/json")
        return service.finish(
            "explain", response, started, requested_at, body, listings, [answer.prediction], served
        )

    @app.get("/model", response_model=ModelInfo, responses=not_ready)
    def model() -> Any:
        """The version serving: lineage, metrics, when and why it was promoted."""
        served = service.watcher.current
        return served.info if served is not None else service.unavailable()

    @app.get("/health")
    def health() -> dict[str, str]:
        """The process answers (says nothing about the model: see /ready)."""
        return {"status": "ok"}

    @app.get("/ready", responses=not_ready)
    def ready() -> Any:
        """200 once a model is loaded; also reports the registry's and the log's state."""
        served = service.watcher.current
        status = service.watcher.status
        stats = service.log.stats
        body = {
            "ready": served is not None,
            "model": served.info.ref().model_dump() if served else None,
            "detail": None if served else service.watcher.unavailable_reason(),
            "registry": {
                "reachable": status.reachable,
                "checked_at": status.checked_at.isoformat() if status.checked_at else None,
                "alias_version": status.alias_version,
                "error": status.error,
            },
            "inference_log": {
                "database_ok": stats.database_ok,
                "buffered_rows": stats.buffered_rows,
                "spooled_rows": stats.spooled_rows,
                "error": stats.last_error,
            },
        }
        return JSONResponse(body, status_code=200 if served is not None else 503)

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")

    _document_listing(app)
    return app


def _document_listing(app: FastAPI) -> None:
    """Put the Listing schema into the OpenAPI components (the body refers to it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["Listing"] = Listing.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def serve(host: str, port: int, settings: Settings) -> None:
    """Run the API with uvicorn (uvloop and httptools when installed)."""
    import uvicorn

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        access_log=False,  # every request is in the inference log and the metrics already
        log_level="info",
    )
