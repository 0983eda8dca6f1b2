"""Shadow rows as serving logs them next to production's prices."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from tasador.core import db, shadow_store
from tasador.core.config import Settings


def rows(
    ratios: list[float], state: str, challenger: str = "2", production: str = "1"
) -> list[dict[str, Any]]:
    """One request whose rows the challenger priced ``ratio`` times production's 100k."""
    request = uuid.uuid4()
    return [
        {
            "request_id": request,
            "row_index": i,
            "requested_at": datetime.now(UTC),
            "model_name": "m",
            "production_version": production,
            "production_prediction": 100_000.0,
            "challenger_version": challenger,
            "challenger_prediction": None if math.isnan(r) else 100_000.0 * r,
            "state": state,
        }
        for i, r in enumerate(ratios)
    ]


def shadow(settings: Settings, n: int, challenger: str = "2", production: str = "1") -> None:
    """``n`` live rows as serving.shadow logs them."""
    request = uuid.uuid4()
    shadow_store.write(
        db.engine("raw", settings.databases),
        [
            {
                "request_id": request,
                "row_index": i,
                "requested_at": datetime.now(UTC),
                "model_name": settings.mlflow.model_name,
                "production_version": production,
                "production_prediction": 300_000.0,
                "challenger_version": challenger,
                "challenger_prediction": 310_000.0,
                "state": "Texas",
            }
            for i in range(n)
        ],
    )
