"""The listings of a request body, read within a size limit and validated in one pass.

/predict and /explain read their bodies themselves, straight from bytes with pydantic (no
intermediate ``json.loads``), because /predict is the hot path and because a body may be an object
or a list: deciding by the first character gives 422s that name fields plainly (``body.bed``,
``body.3.bed``) instead of one error per union branch. serving.openapi still describes the body,
so clients and the schemathesis tests see the real contract.

Bounded by construction (docs/reliability.md): a body is read chunk by chunk and refused (413)
as soon as it passes ``serving_max_body_bytes``, and only a prefix of a refused body reaches the
inference log.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import ValidationError

from serving.answers import LOGGED_BODY_BYTES, LoggedRequest, RequestRefused
from serving.batch import BatchParser, ListingColumns
from serving.schema import LISTING, listings_adapter


def _errors(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors(include_url=False, include_context=False):
        item = {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        if isinstance(error.get("input"), str | int | float | bool | None):
            item["input"] = error["input"]
        errors.append(item)
    return errors


class Bodies:
    """Reads and validates request bodies for one app's limits."""

    def __init__(self, max_bytes: int, max_rows: int) -> None:
        self.max_bytes = max_bytes
        self.max_rows = max_rows
        self._listings = listings_adapter(max_rows)
        self._batch = BatchParser(max_rows)

    def _too_large(self) -> RequestRefused:
        return RequestRefused(
            413,
            f"body over {self.max_bytes} bytes: send at most {self.max_rows} listings per request",
        )

    async def read(self, request: Request, logged: LoggedRequest) -> bytes:
        """The body, also kept on ``logged``; past ``max_bytes``, a 413 and only its first bytes
        kept.

        Read chunk by chunk so a huge or endless body is refused after ``max_bytes`` bytes, not
        held whole; the server discards what the client still sends.
        """
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large()
        body = bytearray()
        async for chunk in request.stream():
            if len(body) + len(chunk) > self.max_bytes:
                body += chunk[: max(0, LOGGED_BODY_BYTES - len(body))]
                logged.body = bytes(body[:LOGGED_BODY_BYTES])
                raise self._too_large()
            body += chunk
        logged.body = bytes(body)
        return logged.body

    def listings(self, body: bytes, many: bool = True) -> ListingColumns:
        """The listings of a body, or the 422 that explains why there are none.

        ``many``: a list of listings is accepted too (``/predict``), not only one object. A list
        is checked column by column (serving.batch); only when that finds a fault is it
        validated listing by listing, whose errors name each bad field.
        """
        start = body.lstrip()[:1]
        try:
            if start == b"[" and many:
                columns = self._batch.many(body)
                return columns or ListingColumns.of(self._listings.validate_json(body))
            if start == b"{":
                return ListingColumns.of([LISTING.validate_json(body)])
        except ValidationError as exc:
            raise RequestRefused(422, _errors(exc, ("body",))) from None
        expected = "expected a listing (JSON object)" + (" or a list of listings" if many else "")
        raise RequestRefused(422, [{"loc": ["body"], "msg": expected, "type": "body_type"}])
