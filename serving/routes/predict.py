"""``POST /predict``: prices for one listing or a list, in the order sent (the hot path), each
with its calibrated range (serving.price_ranges)."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from serving import price_ranges
from serving.deps import check_api_key, model_serving, service_of, start_logged
from serving.openapi import LISTING_REFUSALS, NOT_READY, UNAUTHORIZED
from serving.schema import Predictions

INLINE_ROWS = 64  # larger requests are scored in the thread pool, not on the event loop

router = APIRouter()


@router.post(
    "/predict",
    response_model=Predictions,
    responses={**NOT_READY, **UNAUTHORIZED, **LISTING_REFUSALS},
)
async def predict(request: Request) -> Response:
    """Price one listing (an object) or several (a list), in the order sent."""
    # What /explain declares as dependencies, called in the same order: here each would cost
    # more than the scoring (serving.deps says how much).
    service = service_of(request)
    logged = start_logged(request, "predict")
    check_api_key(request, service)
    listings = service.bodies.listings(await service.bodies.read(request, logged))
    served = model_serving(service)
    if len(listings) <= INLINE_ROWS:
        prices = served.scorer.predict(listings)
    else:
        prices = await run_in_threadpool(served.scorer.predict, listings)
    finite = np.isfinite(prices)
    if not finite.all():
        raise service.not_finite(served, np.flatnonzero(~finite).tolist(), listings)
    values = np.round(prices, 2).tolist()
    coverage = service.settings.serving.serving_range_coverage
    ranged = price_ranges.bounds(served.ranges, listings, prices, coverage)
    low, high = (None, None) if ranged is None else ranged
    answer = Predictions(
        predictions=values,
        low=low,
        high=high,
        coverage=None if ranged is None else coverage,
        model=served.info.ref(),
    )
    response = Response(answer.model_dump_json(), media_type="application/json")
    return service.finish(logged, response, listings, values, served)
