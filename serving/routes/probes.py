"""The probes and the scrape: ``GET /health``, ``/ready`` and ``/metrics``, open without a key."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from serving.deps import ServiceDep
from serving.openapi import NOT_READY

router = APIRouter()


@router.get("/health")
def health() -> dict[str, str]:
    """The process answers (says nothing about the model: see /ready)."""
    return {"status": "ok"}


@router.get("/ready", responses=NOT_READY)
def ready(service: ServiceDep) -> Any:
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
            # A shared decision made for another registry or model, and so not followed.
            "ignored_decision": status.ignored_decision,
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


@router.get("/metrics", response_class=Response)
def metrics(service: ServiceDep) -> Response:
    """Prometheus text format."""
    return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")
