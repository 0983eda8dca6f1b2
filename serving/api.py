"""The prediction API: ``models:/<name>@<alias>`` over HTTP, swapped live when the alias moves.

Endpoints (serving.routes): ``POST /predict`` (one listing or a list), ``POST /explain`` (SHAP
for one listing), ``GET /model``, ``GET /health`` (the process answers), ``GET /ready`` (a model
is loaded; also says whether the registry answers), ``GET /metrics`` (Prometheus).

A worker takes its first request once its first model load has finished or failed (at most
``serving_first_load_s``), so that once one worker says ``/ready``, no other answers 503 because
it is still loading.

How a request goes: its dependencies (serving.deps) check the API key, read and validate the body
(serving.bodies) and take the model serving; any of them, or the route, may refuse it by raising
:class:`serving.answers.RequestRefused`, which the one handler here answers. /predict and
/explain then end in :meth:`serving.service.Service.finish` (latency, inference log, request id).

Bounded by construction (docs/reliability.md): a body is refused (413) as soon as it passes
``serving_max_body_bytes``; at most ``serving_max_explains`` explanations run at once (more get
429 with ``Retry-After``; 503 while the version's explainer, built when it loads, is not yet),
so SHAP cannot take the CPU ``/predict`` needs; a non-finite price is never served (503). With
``serving_api_key`` set, /predict, /explain and /model need that key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response

from serving.answers import REQUEST_ID_HEADER, RequestRefused
from serving.openapi import describe_bodies
from serving.routes import explain, model, predict, probes
from serving.service import Service
from tasador.core import db
from tasador.core.config import Settings, get_settings

# Importers of the API find here what they name with it (tests, `tasador lineage`'s header).
__all__ = ["REQUEST_ID_HEADER", "Service", "app_from_environment", "create_app"]


async def _refused(request: Request, exc: Exception) -> Response:
    """Every refusal's response, and its end as a logged request when the route logs."""
    assert isinstance(exc, RequestRefused)  # registered for that class only
    service: Service = request.app.state.service
    return service.refused(exc, getattr(request.state, "logged", None))


def create_app(settings: Settings) -> FastAPI:
    """The prediction API app; a background watcher hot-swaps the production model."""
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The server owns the engines its service makes: disposed once the log's last flush
        # and the shadow's last write are done.
        with db.owning_engines():
            service.start()
            try:
                await service.first_load()  # no request before the model (Service.first_load)
                yield
            finally:
                service.stop()

    app = FastAPI(
        title="Tasador prediction API",
        summary=(
            f"Prices listings with {settings.mlflow.model_name}@{settings.mlflow.production_alias}."
        ),
        lifespan=lifespan,
        exception_handlers={RequestRefused: _refused},
    )
    app.state.service = service
    for routes in (predict, explain, model, probes):
        app.include_router(routes.router)
    describe_bodies(app, settings.serving.serving_max_rows)
    return app


def app_from_environment() -> FastAPI:
    """The app for the process's settings, for ``uvicorn --factory`` (tests run it so)."""
    return create_app(get_settings())
