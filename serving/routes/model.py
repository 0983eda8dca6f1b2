"""``GET /model``: the version serving, its lineage and metrics (not logged: not an inference)."""

from __future__ import annotations

from fastapi import APIRouter

from serving.deps import ApiKey, CurrentModel, ServiceDep
from serving.models import ModelInfo
from serving.openapi import NOT_READY, UNAUTHORIZED

router = APIRouter()


@router.get(
    "/model",
    response_model=ModelInfo,
    responses={**NOT_READY, **UNAUTHORIZED},
    dependencies=[ApiKey],
)
def model(served: CurrentModel, service: ServiceDep) -> ModelInfo:
    """The version serving: lineage, metrics, when and why it was promoted."""
    refused = service.watcher.status.refused
    return served.info.model_copy(update={"refused": refused.reason}) if refused else served.info
