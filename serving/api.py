"""The prediction API: ``models:/<name>@<alias>`` over HTTP, swapped live when the alias moves.

Endpoints: ``POST /predict`` (one listing or a list), ``POST /explain`` (SHAP for one listing),
``GET /model``, ``GET /health`` (the process answers), ``GET /ready`` (a model is loaded; also
says whether the registry answers), ``GET /metrics`` (Prometheus).

``/predict`` parses its body itself, straight from bytes with pydantic (one pass, no
intermediate ``json.loads``), because it is the hot path and because a body may be an object
or a list: deciding by the first character gives 422s that name fields plainly (``body.bed``,
``body.3.bed``) instead of one error per union branch. The OpenAPI document still describes
the body (``_listing_body``), so clients and the schemathesis tests see the real contract.

Bounded by construction (docs/reliability.md): a body is read chunk by chunk and refused (413)
as soon as it passes ``serving_max_body_bytes``, and only a prefix of a refused body reaches the
inference log; at most ``serving_max_explains`` explanations run at once (more get 429 with
``Retry-After``), so SHAP cannot take the CPU ``/predict`` needs; a non-finite price is never
served (503). With ``serving_api_key`` set, /predict, /explain and /model need that key.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from serving.batch import BatchParser, ListingColumns
from serving.hot_swap import ModelWatcher
from serving.inference_log import MAX_ERROR_BODY, Entry, InferenceLog
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
from serving.shadow import Shadow
from tasador.core import db
from tasador.core.config import Settings, get_settings
from tasador.core.errors import BadInput

if TYPE_CHECKING:
    from serving.explanations import Explainers

logger = logging.getLogger(__name__)

INLINE_ROWS = 64  # larger requests are scored in the thread pool, not on the event loop
LOGGED_BODY_BYTES = 4 * MAX_ERROR_BODY  # of a refused body: enough for MAX_ERROR_BODY characters
RETRY_AFTER_S = 1  # what a 429 asks: one explanation takes well under a second
REQUEST_ID_HEADER = "X-Request-ID"  # the logged request's UUID, on every response


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
            lambda: db.engine("raw", settings.databases),
            settings.state_dir / "serving" / "spool",
            settings.serving.serving_log_buffer_rows,
            settings.serving.serving_log_flush_s,
            max_spool_bytes=settings.serving.serving_log_spool_max_bytes,
            shutdown_s=settings.serving.serving_shutdown_s,
        )
        # The @challenger prices a sample of /predict rows in the background (serving.shadow).
        self.shadow = Shadow(
            settings, lambda: self.watcher.current, lambda: db.engine("raw", settings.databases)
        )
        self.metrics = ServingMetrics(self.watcher, self.log, self.shadow.stats)
        self.listings = listings_adapter(settings.serving.serving_max_rows)
        self.batch = BatchParser(settings.serving.serving_max_rows)
        self.max_body = settings.serving.serving_max_body_bytes
        self.explaining = 0  # explanations running; only the event loop changes it
        key = settings.serving.serving_api_key
        self._api_key = key.get_secret_value().encode() if key is not None else None

    @cached_property
    def explainers(self) -> Explainers:
        """SHAP's explainers, imported at the first /explain: SHAP (and matplotlib) cost each
        worker ~5 s of start-up and ~100 MB that /predict never needs."""
        from serving.explanations import Explainers

        return Explainers()

    def explain(self, served: ServedModel, listing: Listing, price: float) -> Explanation:
        """One explanation (in a worker thread: the first one imports SHAP)."""
        from serving.explanations import explain_listing

        return explain_listing(served, listing, self.explainers, price)

    def _swapped(self, served: ServedModel) -> None:
        info = served.info
        self.metrics.model_swapped(info.name, info.version, info.alias)

    def authorized(self, request: Request) -> bool:
        """True when no key is set, or the request carries it (X-API-Key or Bearer)."""
        if self._api_key is None:
            return True
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else ""
        # Constant time: how much of a guess matched must not show in the response time.
        return hmac.compare_digest(given.encode(), self._api_key)

    @staticmethod
    def unauthorized() -> JSONResponse:
        return JSONResponse(
            {"detail": "missing or wrong API key: send it as X-API-Key or Authorization: Bearer"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    def too_large(self) -> JSONResponse:
        return JSONResponse(
            {
                "detail": f"body over {self.max_body} bytes: send at most "
                f"{self.settings.serving.serving_max_rows} listings per request"
            },
            status_code=413,
        )

    async def read(self, request: Request) -> tuple[bytes, JSONResponse | None]:
        """The body, or its first bytes and a 413 once it passes ``max_body``.

        Read chunk by chunk so a huge or endless body is refused after ``max_body`` bytes, not
        held whole; the server discards what the client still sends.
        """
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return b"", self.too_large()
        body = bytearray()
        async for chunk in request.stream():
            if len(body) + len(chunk) > self.max_body:
                body += chunk[: max(0, LOGGED_BODY_BYTES - len(body))]
                return bytes(body[:LOGGED_BODY_BYTES]), self.too_large()
            body += chunk
        return bytes(body), None

    def parse(self, body: bytes, many: bool = True) -> ListingColumns | JSONResponse:
        """The listings of a body, or the 422 that explains why there are none.

        ``many``: a list of listings is accepted too (``/predict``), not only one object. A list
        is checked column by column (serving.batch); only when that finds a fault is it
        validated listing by listing, whose errors name each bad field.
        """
        start = body.lstrip()[:1]
        try:
            if start == b"[" and many:
                columns = self.batch.many(body)
                return columns or ListingColumns.of(self.listings.validate_json(body))
            if start == b"{":
                return ListingColumns.of([LISTING.validate_json(body)])
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

    def not_finite(self, served: ServedModel, rows: list[int]) -> JSONResponse:
        """The 503 of a model that predicted NaN or infinity: such a price is never served."""
        info = served.info
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        logger.error("%s version %s predicted non-finite prices", info.name, info.version)
        self.metrics.non_finite.inc(len(rows))
        return JSONResponse(
            {
                "detail": f"{info.name} version {info.version} predicted no finite price for "
                f"listing {shown} (of this request): not served"
            },
            status_code=503,
        )

    def finish(
        self,
        endpoint: str,
        response: Response,
        started: float,
        requested_at: datetime,
        body: bytes,
        listings: Sequence[Listing] | None = None,
        predictions: list[float] | None = None,
        served: ServedModel | None = None,
    ) -> Response:
        seconds = time.perf_counter() - started
        self.metrics.observe(endpoint, response.status_code, seconds)
        refused = listings is None
        if refused:  # only a prefix: a refused body may be as large as the limit allows
            body = body[:LOGGED_BODY_BYTES]
        entry = Entry(
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
        self.log.record(entry)
        if endpoint == "predict" and predictions is not None:
            self.shadow.offer(entry)
        # The id under which the request is logged: what `tasador lineage --request` takes.
        response.headers[REQUEST_ID_HEADER] = str(entry.request_id)
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
        service.shadow.start()
        service.metrics.start()
        try:
            yield
        finally:
            service.shadow.stop()
            service.watcher.stop()
            service.log.stop()
            service.metrics.stop()

    app = FastAPI(
        title="Tasador prediction API",
        summary=(
            f"Prices listings with {settings.mlflow.model_name}@{settings.mlflow.production_alias}."
        ),
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
            401: {"model": Problem, "description": "API key missing or wrong (when one is set)."},
            413: {"model": Problem, "description": "Body over serving_max_body_bytes."},
            422: {"description": "Invalid listing: each bad field is named in detail[].loc."},
        },
        openapi_extra={"requestBody": _listing_body(settings.serving.serving_max_rows)},
    )
    async def predict(request: Request) -> Response:
        """Price one listing (an object) or several (a list), in the order sent."""
        started, requested_at = time.perf_counter(), datetime.now(UTC)
        if not service.authorized(request):  # before reading: no work for strangers' bodies
            return service.finish("predict", service.unauthorized(), started, requested_at, b"")
        body, refused = await service.read(request)
        if refused is not None:
            return service.finish("predict", refused, started, requested_at, body)
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
        finite = np.isfinite(prices)
        if not finite.all():
            bad = np.flatnonzero(~finite).tolist()
            refusal = service.not_finite(served, bad)
            return service.finish(
                "predict", refusal, started, requested_at, body, listings, None, served
            )
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
            401: {"model": Problem, "description": "API key missing or wrong (when one is set)."},
            413: {"model": Problem, "description": "Body over serving_max_body_bytes."},
            422: {"description": "Invalid listing: each bad field is named in detail[].loc."},
            429: {"model": Problem, "description": "Too many explanations at once: retry later."},
        },
        openapi_extra={"requestBody": _listing_body(None)},
    )
    async def explain(request: Request) -> Response:
        """SHAP contributions for one listing, from the model version that prices it."""
        started, requested_at = time.perf_counter(), datetime.now(UTC)
        if not service.authorized(request):
            return service.finish("explain", service.unauthorized(), started, requested_at, b"")
        if service.explaining >= settings.serving.serving_max_explains:
            busy = JSONResponse(
                {"detail": f"{service.explaining} explanations running: retry later"},
                status_code=429,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
            return service.finish("explain", busy, started, requested_at, b"")
        service.explaining += 1  # no await between the check and this: one slot, one request
        try:
            return await _explain(request, started, requested_at)
        finally:
            service.explaining -= 1

    async def _explain(request: Request, started: float, requested_at: datetime) -> Response:
        body, refused = await service.read(request)
        if refused is not None:
            return service.finish("explain", refused, started, requested_at, body)
        listings = service.parse(body, many=False)
        if isinstance(listings, Response):
            return service.finish("explain", listings, started, requested_at, body)
        served = service.watcher.current
        if served is None:
            return service.finish("explain", service.unavailable(), started, requested_at, body)
        price = float(served.scorer.predict(listings)[0])
        if not math.isfinite(price):
            refusal = service.not_finite(served, [0])
            return service.finish(
                "explain", refusal, started, requested_at, body, listings, None, served
            )
        try:
            answer = await run_in_threadpool(service.explain, served, listings[0], price)
        except BadInput as exc:
            refusal = JSONResponse({"detail": str(exc)}, status_code=503)
            return service.finish(
                "explain", refusal, started, requested_at, body, listings, None, served
            )
        response = Response(answer.model_dump_json(), media_type="application/json")
        return service.finish(
            "explain", response, started, requested_at, body, listings, [answer.prediction], served
        )

    @app.get(
        "/model",
        response_model=ModelInfo,
        responses={
            **not_ready,
            401: {"model": Problem, "description": "API key missing or wrong (when one is set)."},
        },
    )
    def model(request: Request) -> Any:
        """The version serving: lineage, metrics, when and why it was promoted."""
        if not service.authorized(request):
            return service.unauthorized()
        served = service.watcher.current
        if served is None:
            return service.unavailable()
        refused = service.watcher.status.refused
        return (
            served.info.model_copy(update={"refused": refused.reason}) if refused else served.info
        )

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
            # Validated swap and instant rollback (serving.hot_swap).
            "refused": service.watcher.refused_json(),
            "last_swap": service.watcher.last_swap_json(),
            # Which worker process answered, and whether it is the one polling the registry.
            "worker": {"pid": os.getpid(), "leader": status.leader},
            "inference_log": {
                "database_ok": stats.database_ok,
                "buffered_rows": stats.buffered_rows,
                "spooled_rows": stats.spooled_rows,
                "dropped_rows": stats.dropped_rows,
                "quarantined_rows": stats.quarantined_rows,
                "writer_alive": service.log.writer_alive,
                "error": stats.last_error,
            },
            "shadow": service.shadow.describe(),
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


def app_from_environment() -> FastAPI:
    """The app for the process's settings, for ``uvicorn --factory`` (tests run it so)."""
    return create_app(get_settings())
