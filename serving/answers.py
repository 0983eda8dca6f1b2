"""How a request ends: answered, or refused by raising :class:`RequestRefused` where it fails.

A refusal is raised wherever a request is found wanting (a dependency: the API key, the body's
size or content, no model loaded; a route: a price that is not finite, an explanation that
fails) and turned into its JSON response once, by the app's exception handler. Answered or
refused, a request to an endpoint the inference log keeps (:class:`LoggedRequest`, /predict and
/explain) then ends in one place, :meth:`serving.service.Service.finish`: its latency, its log
entry and its ``X-Request-ID`` header.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

from serving.log_rows import MAX_ERROR_BODY

if TYPE_CHECKING:
    from serving.models import ServedModel
    from serving.schema import Listing

# Of a refused body, what is read and logged: enough bytes for MAX_ERROR_BODY characters.
LOGGED_BODY_BYTES = 4 * MAX_ERROR_BODY
REQUEST_ID_HEADER = "X-Request-ID"  # the logged request's UUID, on every response


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class LoggedRequest:
    """A request the inference log keeps: its endpoint, when it came, the body read so far."""

    endpoint: str
    started: float = field(default_factory=time.perf_counter)  # for its latency
    requested_at: datetime = field(default_factory=_now)
    body: bytes = b""  # logged (a prefix) when the request is refused before its listings


class RequestRefused(Exception):
    """A request answered with an error: its status, ``detail`` and headers.

    ``listings`` and ``served`` when it was refused after its listings were priced (a price
    that is not finite, an explanation that failed): the log keeps them rather than the body.
    """

    def __init__(
        self,
        status_code: int,
        detail: Any,
        *,
        headers: Mapping[str, str] | None = None,
        listings: Sequence[Listing] | None = None,
        served: ServedModel | None = None,
    ) -> None:
        super().__init__(status_code, detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers
        self.listings = listings
        self.served = served

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"detail": self.detail}, status_code=self.status_code, headers=self.headers
        )
