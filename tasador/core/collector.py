"""Collect the next batch from the data API into RAW.

Retries with exponential backoff on connection errors, timeouts and 5xx answers. A payload that is
not what the course API contract promises (not JSON, missing keys, rows of the wrong width or with
unknown columns) raises ``PayloadError`` and writes nothing. An exhausted API is a normal outcome.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationError

from tasador.core import raw_store
from tasador.core.columns import RAW_COLUMNS
from tasador.core.errors import BadInput, ServiceUnavailable

log = logging.getLogger(__name__)

EXHAUSTED_DETAIL = "Ya se recolectó toda la información mínima necesaria"


class CollectError(ServiceUnavailable):
    """The data API could not be read (after retries) or answered something unexpected."""


class PayloadError(CollectError, BadInput):
    """The data API answered, but not with a valid batch."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")  # later editions may add fields; we ignore them

    group_number: int
    batch_number: int
    day: str | None = None
    data: list[dict[str, Any] | list[Any]]


@dataclass(frozen=True)
class CollectResult:
    """What a collect did: stored a new batch, found it stored already, or found none left."""

    outcome: Literal["stored", "already_stored", "exhausted"]
    batch_id: int | None = None
    batch_number: int | None = None
    row_count: int = 0


def parse_payload(body: bytes, group_number: int) -> _Payload:
    """The data API's batch, validated and for ``group_number``; raises PayloadError if not."""
    try:
        payload = _Payload.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][:2]) or 'body'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        raise PayloadError(f"the data API sent an invalid batch ({problems})") from None
    if payload.group_number != group_number:
        raise PayloadError(
            f"asked for group {group_number} but the data API answered for group "
            f"{payload.group_number}"
        )
    return payload


def rows_in_column_order(data: list[dict[str, Any] | list[Any]]) -> list[tuple[Any, ...]]:
    """Rows as tuples in RAW_COLUMNS order, from objects keyed by column or from lists."""
    expected = set(RAW_COLUMNS)
    rows = []
    for i, row in enumerate(data):
        if isinstance(row, dict):
            if row.keys() != expected:
                missing = sorted(expected - row.keys())
                unknown = sorted(row.keys() - expected)
                raise PayloadError(
                    f"row {i} has the wrong columns (missing: {missing or 'none'}, "
                    f"unknown: {unknown or 'none'})"
                )
            rows.append(tuple(row[c] for c in RAW_COLUMNS))
        else:
            if len(row) != len(RAW_COLUMNS):
                raise PayloadError(
                    f"row {i} has {len(row)} values; expected {len(RAW_COLUMNS)} "
                    f"({', '.join(RAW_COLUMNS)})"
                )
            rows.append(tuple(row))
    return rows


def fetch(
    client: httpx.Client,
    url: str,
    params: dict[str, Any],
    *,
    max_retries: int,
    backoff_s: float,
) -> httpx.Response:
    """GET with retries on transport errors and 5xx; other answers are returned as they are."""
    for attempt in range(max_retries + 1):
        try:
            response = client.get(url, params=params)
            if response.status_code < 500:
                return response
            problem = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if attempt == max_retries:
            raise CollectError(f"{url} failed after {max_retries + 1} attempts ({problem})")
        delay = backoff_s * 2**attempt
        log.warning("%s: %s; retrying in %.1fs", url, problem, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")


def collect_batch(
    engine: sa.Engine,
    api_url: str,
    group_number: int,
    day: str | None = None,
    *,
    timeout_s: float = 60.0,
    max_retries: int = 5,
    backoff_s: float = 0.5,
    transport: httpx.BaseTransport | None = None,
) -> CollectResult:
    """Ask the data API for the next batch of a group and store it in RAW."""
    params: dict[str, Any] = {"group_number": group_number}
    if day:
        params["day"] = day
    url = api_url.rstrip("/") + "/data"
    with httpx.Client(timeout=timeout_s, transport=transport) as client:
        response = fetch(client, url, params, max_retries=max_retries, backoff_s=backoff_s)
    if response.status_code == 400 and _is_exhausted(response):
        return CollectResult(outcome="exhausted")
    if response.status_code != 200:
        raise CollectError(f"{url} answered HTTP {response.status_code}: {response.text[:300]}")
    payload = parse_payload(response.content, group_number)
    rows = rows_in_column_order(payload.data)
    stored = raw_store.store_batch(
        engine,
        group_number=group_number,
        day=day,
        batch_number=payload.batch_number,
        rows=rows,
        payload_sha256=hashlib.sha256(response.content).hexdigest(),
        source=api_url,
    )
    return CollectResult(
        outcome="stored" if stored.created else "already_stored",
        batch_id=stored.id,
        batch_number=payload.batch_number,
        row_count=stored.row_count,
    )


def _is_exhausted(response: httpx.Response) -> bool:
    try:
        return bool(response.json().get("detail") == EXHAUSTED_DETAIL)
    except ValueError:
        return False
