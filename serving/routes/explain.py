"""``POST /explain``: SHAP contributions for one listing, a few at a time (serving.deps)."""

from __future__ import annotations

import math

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from serving.answers import RequestRefused
from serving.deps import (
    ApiKey,
    CurrentModel,
    ExplainerBuilt,
    ExplainSlot,
    Logged,
    OneListing,
    ServiceDep,
    logged_as,
)
from serving.openapi import BUSY, LISTING_REFUSALS, NOT_READY, UNAUTHORIZED
from serving.schema import Explanation
from tasador.core.errors import BadInput

router = APIRouter()


@router.post(
    "/explain",
    response_model=Explanation,
    responses={**NOT_READY, **UNAUTHORIZED, **LISTING_REFUSALS, **BUSY},
    # In this order: the clock, the key, the explainer built, a free slot, and only then the body.
    dependencies=[logged_as("explain"), ApiKey, ExplainerBuilt, ExplainSlot],
)
async def explain(
    logged: Logged, listings: OneListing, served: CurrentModel, service: ServiceDep
) -> Response:
    """SHAP contributions for one listing, from the model version that prices it."""
    price = float(served.scorer.predict(listings)[0])
    if not math.isfinite(price):
        raise service.not_finite(served, [0], listings)
    try:
        answer = await run_in_threadpool(service.explain, served, listings[0], price)
    except BadInput as exc:
        raise RequestRefused(503, str(exc), listings=listings, served=served) from exc
    response = Response(answer.model_dump_json(), media_type="application/json")
    return service.finish(logged, response, listings, [answer.prediction], served)
