"""The routes' dependencies: the service, the settings, the API key, the logged request, the
body's listings, the loaded model and an explanation slot.

A dependency that refuses raises :class:`serving.answers.RequestRefused`; they run in the order a
route declares them, which is the order of its refusals (401 before the body is read, 413 and 422
before the model is looked up). Each is ``async``: FastAPI runs a plain ``def`` dependency in the
thread pool, a hand-off that costs more than the dependency itself.

/predict, the hot path, calls the plain functions below (:func:`start_logged`,
:func:`check_api_key`, :func:`model_serving`, the body's ``read`` and ``listings``) in the same
order instead of declaring them: FastAPI solves each declared dependency in ~10 µs (measured
in process on this 2-core host: 18 µs for a route with none, 35 with one, 67 with four), and
the four /predict would need cost ~40 µs of a ~700 µs single-row round trip, ~5% of its
throughput. A route off the hot path declares them.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, params

from serving.answers import LoggedRequest, RequestRefused
from serving.batch import ListingColumns
from serving.models import ServedModel
from serving.service import Service
from tasador.core.config import Settings

RETRY_AFTER_S = 1  # what a 429 asks: one explanation takes well under a second
BUILDING_RETRY_AFTER_S = 2  # what a 503 "being built" asks: a build takes seconds, SHAP's import


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def get_service(request: Request) -> Service:
    return service_of(request)


ServiceDep = Annotated[Service, Depends(get_service)]


async def get_settings(service: ServiceDep) -> Settings:
    return service.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def check_api_key(request: Request, service: Service) -> None:
    """401 unless no key is set or the request carries it (X-API-Key or Bearer); before the
    body is read: no work for strangers' bodies."""
    if service.api_key is None:
        return
    given = request.headers.get("x-api-key")
    if given is None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
    # Constant time: how much of a guess matched must not show in the response time.
    if not hmac.compare_digest(given.encode(), service.api_key):
        raise RequestRefused(
            401,
            "missing or wrong API key: send it as X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_api_key(request: Request, service: ServiceDep) -> None:
    check_api_key(request, service)


ApiKey = Depends(require_api_key)


def start_logged(request: Request, endpoint: str) -> LoggedRequest:
    """Start the clock of a request the inference log keeps, under ``endpoint``; from here its
    refusals are logged too (the exception handler finds it on ``request.state``)."""
    logged = LoggedRequest(endpoint)
    request.state.logged = logged
    return logged


def logged_as(endpoint: str) -> params.Depends:
    """The first dependency of a route whose requests the inference log keeps."""

    async def start(request: Request) -> None:
        start_logged(request, endpoint)

    return params.Depends(start)


async def logged_request(request: Request) -> LoggedRequest:
    logged: LoggedRequest = request.state.logged
    return logged


Logged = Annotated[LoggedRequest, Depends(logged_request)]


async def one_listing(request: Request, logged: Logged, service: ServiceDep) -> ListingColumns:
    """The body's one listing (413 past the size limit, 422 when invalid or a list)."""
    return service.bodies.listings(await service.bodies.read(request, logged), many=False)


OneListing = Annotated[ListingColumns, Depends(one_listing)]


def model_serving(service: Service) -> ServedModel:
    """The model serving, read once: the request stays on it even if a swap comes meanwhile
    (503 before any model is loaded)."""
    served = service.watcher.current
    if served is None:
        raise service.unavailable()
    return served


async def current_model(service: ServiceDep) -> ServedModel:
    return model_serving(service)


CurrentModel = Annotated[ServedModel, Depends(current_model)]


async def explainer_built(service: ServiceDep) -> None:
    """503 with ``Retry-After`` while the serving version's explainer is being built (it is,
    from the moment the version loads: serving.explanations), before any slot is taken: the
    wait is the build's, not other explanations'."""
    served = service.watcher.current
    if served is not None and service.explainers.building(served):
        raise RequestRefused(
            503,
            f"explainer for version {served.info.version} is being built: retry later",
            headers={"Retry-After": str(BUILDING_RETRY_AFTER_S)},
        )


ExplainerBuilt = Depends(explainer_built)


async def explain_slot(service: ServiceDep, settings: SettingsDep) -> AsyncIterator[None]:
    """One of the ``serving_max_explains`` explanations that may run at once, held until the
    route returns; 429 with ``Retry-After`` when all are taken, so SHAP cannot take the CPU
    /predict needs."""
    if service.explaining >= settings.serving.serving_max_explains:
        raise RequestRefused(
            429,
            f"{service.explaining} explanations running: retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    service.explaining += 1  # no await between the check and this: one slot, one request
    try:
        yield
    finally:
        service.explaining -= 1


ExplainSlot = Depends(explain_slot, scope="function")
