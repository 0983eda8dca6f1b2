"""Collect the next batch from the data API into RAW, losing none.

The data API moves a group's cursor as it answers, so its answer is the only copy of a batch.
``collect_batch`` therefore works in this order:

1. **Inbox first.** If the inbox (``<state_dir>/inbox``) holds a body an earlier collect received
   but could not store (RAW down, a crash), the oldest one is stored and returned; the API is
   not asked. Batches reach RAW in the order they were served and none is skipped.
2. **Bounded read.** ``GET /data`` is read streamed, refused beyond ``max_response_bytes``
   (``ResponseTooLarge``; the partial body is not kept).
3. **Durable before parsed.** A 200 body is written to the inbox atomically (temp file, fsync,
   rename, fsync of the folder) before it is parsed; it leaves the inbox once RAW has committed
   it.

Retries: only failures where the request cannot have reached the API (connection refused,
connect timeout) and 5xx answers (the data API keeps its cursor when it fails to build a batch)
are retried. A read timeout or a dropped connection after the request was sent is not: the API
may have moved its cursor, so a retry would silently get the next batch. The error says so; the
next stored batch reveals the skipped number, which RAW records as a gap (``batch_gaps``),
``tasador status`` shows, and :func:`recover_gaps` (``tasador recover``) fills by restarting the
group's deterministic sequence and storing only the missing batches.

Bad content is kept, never dropped:

- a body that is not a batch at all (not JSON, no ``data``, another group) is moved to
  ``inbox/invalid/`` next to a ``.reason`` file and raises ``PayloadError``;
- a row that cannot be stored as columns (wrong columns or width, a non-scalar value, a NUL
  character: PostgreSQL text refuses U+0000 and COPY fails, or a string that is not valid
  UTF-8) goes to RAW's ``rejected_rows`` with its reason and its JSON text (where NUL is the
  escape ``\\u0000``), counted in ``batches.rejected_count``; the other rows are stored as usual.
  Such rows are rejected rather than repaired (e.g. NUL stripped) so RAW never holds a value
  that differs from what the API sent.

An exhausted API is a normal outcome.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationError

from tasador.core import raw_store
from tasador.core.columns import RAW_COLUMNS
from tasador.core.errors import BadInput, ServiceUnavailable

log = logging.getLogger(__name__)

EXHAUSTED_DETAIL = "Ya se recolectó toda la información mínima necesaria"
DEFAULT_MAX_RESPONSE_BYTES = 268_435_456
_SUFFIX = ".batch"  # a complete body in the inbox; anything else there is not one


class CollectError(ServiceUnavailable):
    """The data API could not be read (after retries) or answered something unexpected."""


class PayloadError(CollectError, BadInput):
    """The data API answered, but not with a valid batch."""


class ResponseTooLarge(PayloadError):
    """The data API's answer exceeds the size the collector accepts."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")  # later editions may add fields; we ignore them

    group_number: int
    batch_number: int
    day: str | None = None
    data: list[Any]  # rows are checked one by one, so one bad row does not sink the batch


@dataclass(frozen=True)
class CollectResult:
    """What a collect did: stored a new batch, found it stored already, or found none left."""

    outcome: Literal["stored", "already_stored", "exhausted"]
    batch_id: int | None = None
    batch_number: int | None = None
    row_count: int = 0
    rejected_count: int = 0  # rows kept in rejected_rows instead of batch_rows
    gaps: tuple[int, ...] = ()  # batch numbers this batch revealed as skipped
    from_inbox: bool = False  # stored from a body an earlier collect received


@dataclass(frozen=True)
class SplitRows:
    """A payload's rows: those storable as columns (with their positions) and the rejected."""

    rows: list[tuple[Any, ...]]
    indexes: list[int]
    rejected: list[raw_store.RejectedRow]


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


def _row_problem(row: Any, index: int) -> tuple[tuple[Any, ...] | None, str | None]:
    """The row as a tuple in RAW_COLUMNS order, or why it cannot be stored as columns."""
    if isinstance(row, dict):
        expected = set(RAW_COLUMNS)
        if row.keys() != expected:
            missing = sorted(expected - row.keys())
            unknown = sorted(row.keys() - expected)
            return None, (
                f"row {index} has the wrong columns (missing: {missing or 'none'}, "
                f"unknown: {unknown or 'none'})"
            )
        values = tuple(row[c] for c in RAW_COLUMNS)
    elif isinstance(row, list):
        if len(row) != len(RAW_COLUMNS):
            return None, (
                f"row {index} has {len(row)} values; expected {len(RAW_COLUMNS)} "
                f"({', '.join(RAW_COLUMNS)})"
            )
        values = tuple(row)
    else:
        return None, f"row {index} is a {type(row).__name__}, not an object or a list"
    for column, value in zip(RAW_COLUMNS, values, strict=True):
        if isinstance(value, dict | list):
            return None, f"row {index}: {column} is not a single value"
        if isinstance(value, str):
            if "\x00" in value:
                return None, f"row {index}: {column} contains a NUL character"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return None, f"row {index}: {column} is not valid UTF-8 text"
    return values, None


def split_rows(data: list[Any]) -> SplitRows:
    """Rows as tuples in RAW_COLUMNS order, from objects keyed by column or from lists; the
    rows that cannot be stored as columns are set aside with their reason, none dropped."""
    split = SplitRows(rows=[], indexes=[], rejected=[])
    for index, row in enumerate(data):
        values, problem = _row_problem(row, index)
        if values is not None:
            split.rows.append(values)
            split.indexes.append(index)
        else:
            assert problem is not None  # _row_problem gives one or the other
            content = json.dumps(row, ensure_ascii=True)  # escapes NUL: storable text
            split.rejected.append(raw_store.RejectedRow(index, problem, content))
    return split


def rows_in_column_order(data: list[Any]) -> list[tuple[Any, ...]]:
    """Rows as tuples in RAW_COLUMNS order; raises PayloadError on the first unstorable row."""
    split = split_rows(data)
    if split.rejected:
        raise PayloadError(split.rejected[0].reason)
    return split.rows


def _read_capped(response: httpx.Response, max_bytes: int, url: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ResponseTooLarge(
            f"{url} announced {int(declared)} bytes, more than the {max_bytes} accepted "
            "(TASADOR_API_MAX_RESPONSE_BYTES); nothing was stored"
        )
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(
                f"{url} sent more than the {max_bytes} bytes accepted "
                "(TASADOR_API_MAX_RESPONSE_BYTES); the partial body was not stored"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def fetch(
    client: httpx.Client,
    url: str,
    params: dict[str, Any],
    *,
    max_retries: int,
    backoff_s: float,
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> tuple[int, bytes]:
    """GET (status, body), the body read up to ``max_bytes``; retries only what cannot have
    moved the API's cursor: a refused or timed-out connection, and 5xx answers."""
    for attempt in range(max_retries + 1):
        answered = False
        try:
            with client.stream("GET", url, params=params) as response:
                answered = True
                body = _read_capped(response, max_bytes, url)
            if response.status_code < 500:
                return response.status_code, body
            problem = f"HTTP {response.status_code}"
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            problem = f"{type(exc).__name__}: {exc}"  # the request never left: safe to retry
        except httpx.TransportError as exc:
            when = "while sending its body" if answered else "after the request was sent"
            raise CollectError(
                f"{url} failed {when} ({type(exc).__name__}: {exc or 'no detail'}); not "
                "retried, as the data API may have served a batch. If it did, the next batch "
                "collected shows the skipped number in `tasador status`, and `tasador recover` "
                "fills it"
            ) from None
        if attempt == max_retries:
            raise CollectError(f"{url} failed after {max_retries + 1} attempts ({problem})")
        delay = backoff_s * 2**attempt
        log.warning("%s: %s; retrying in %.1fs", url, problem, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")


# --- the inbox: received bodies, durable until RAW has them --------------------------------


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def keep_body(inbox: Path, body: bytes, *, group_number: int, day: str | None, source: str) -> Path:
    """Write a received body to the inbox atomically and durably; return its path.

    The file is a JSON line of what the body was asked for, then the body as received.
    """
    inbox.mkdir(parents=True, exist_ok=True)
    # Time first, so names sort in the order the bodies arrived.
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    meta = json.dumps({"group_number": group_number, "day": day, "source": source})
    temp = inbox / f"{name}.tmp"
    with temp.open("wb") as out:
        out.write(meta.encode() + b"\n" + body)
        out.flush()
        os.fsync(out.fileno())
    final = temp.with_suffix(_SUFFIX)
    os.replace(temp, final)
    _fsync_dir(inbox)
    return final


def pending_bodies(inbox: Path) -> list[Path]:
    """Bodies received but not stored in RAW yet, oldest first."""
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if p.is_file() and p.suffix == _SUFFIX)


def _quarantine(path: Path, reason: str) -> Path:
    invalid = path.parent / "invalid"
    invalid.mkdir(exist_ok=True)
    target = invalid / path.name
    (invalid / f"{path.stem}.reason").write_text(reason + "\n")
    os.replace(path, target)
    _fsync_dir(invalid)
    _fsync_dir(path.parent)
    return target


def _store_payload(
    engine: sa.Engine,
    group_number: int,
    day: str | None,
    payload: _Payload,
    split: SplitRows,
    body: bytes,
    source: str,
) -> raw_store.StoredBatch:
    """One parsed batch into RAW, keyed by the sha256 of the body exactly as received."""
    return raw_store.store_batch(
        engine,
        group_number=group_number,
        day=day,
        batch_number=payload.batch_number,
        rows=split.rows,
        row_indexes=split.indexes,
        rejected=split.rejected,
        payload_sha256=hashlib.sha256(body).hexdigest(),
        source=source,
    )


def store_body(engine: sa.Engine, path: Path) -> CollectResult:
    """Parse and store one inbox body in RAW, then remove it from the inbox.

    A body that is not a batch is moved to ``invalid/`` and raises PayloadError; RAW
    unreachable raises CollectError and leaves the body where it is, for the next collect.
    """
    meta_line, _, body = path.read_bytes().partition(b"\n")
    meta = json.loads(meta_line)
    group_number, day, source = meta["group_number"], meta["day"], meta["source"]
    try:
        payload = parse_payload(body, group_number)
    except PayloadError as exc:
        kept = _quarantine(path, str(exc))
        raise PayloadError(f"{exc}; the body is kept in {kept}") from None
    split = split_rows(payload.data)
    try:
        stored = _store_payload(engine, group_number, day, payload, split, body, source)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise CollectError(
            f"RAW could not store batch {payload.batch_number} ({type(exc.orig).__name__}); "
            f"the body is kept in {path} and the next collect stores it first"
        ) from exc
    if split.rejected:
        log.warning(
            "batch %s: %d rows kept in rejected_rows (%s)",
            payload.batch_number,
            len(split.rejected),
            split.rejected[0].reason,
        )
    if stored.gaps:
        log.warning(
            "group %s: batch numbers %s were skipped; `tasador recover --group %s` fills them",
            group_number,
            list(stored.gaps),
            group_number,
        )
    path.unlink(missing_ok=True)  # another collect may have stored (and removed) it too
    _fsync_dir(path.parent)
    return CollectResult(
        outcome="stored" if stored.created else "already_stored",
        batch_id=stored.id,
        batch_number=payload.batch_number,
        row_count=stored.row_count,
        rejected_count=stored.rejected_count,
        gaps=stored.gaps,
    )


def collect_batch(
    engine: sa.Engine,
    api_url: str,
    group_number: int,
    day: str | None = None,
    *,
    inbox: Path,
    timeout_s: float = 60.0,
    max_retries: int = 5,
    backoff_s: float = 0.5,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    transport: httpx.BaseTransport | None = None,
) -> CollectResult:
    """Store the oldest body waiting in ``inbox``; if none waits, ask the data API for the next
    batch of a group, keep it in ``inbox`` and store it in RAW."""
    waiting = pending_bodies(inbox)
    if waiting:
        result = store_body(engine, waiting[0])
        return dataclasses.replace(result, from_inbox=True)
    params: dict[str, Any] = {"group_number": group_number}
    if day:
        params["day"] = day
    url = api_url.rstrip("/") + "/data"
    with httpx.Client(timeout=timeout_s, transport=transport) as client:
        status, body = fetch(
            client,
            url,
            params,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_bytes=max_response_bytes,
        )
    if status == 400 and _is_exhausted(body):
        return CollectResult(outcome="exhausted")
    if status != 200:
        text = body[:300].decode("utf-8", "replace")
        raise CollectError(f"{url} answered HTTP {status}: {text}")
    path = keep_body(inbox, body, group_number=group_number, day=day, source=api_url)
    return store_body(engine, path)


@dataclass(frozen=True)
class RecoverResult:
    """What a recovery did: the batches it stored (filling gaps) and the gaps still open."""

    stored: tuple[CollectResult, ...]
    still_missing: tuple[int, ...]


def recover_gaps(
    engine: sa.Engine,
    api_url: str,
    group_number: int,
    day: str | None = None,
    *,
    timeout_s: float = 60.0,
    max_retries: int = 5,
    backoff_s: float = 0.5,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> RecoverResult:
    """Fill a group's gaps: restart its sequence on the data API and replay it up to the last
    stored batch, storing only the missing numbers (the API's cursor ends where it was).

    Needs a deterministic sequence (the built-in data API's is); a number the replay does not
    serve stays a gap.
    """
    missing = {g.batch_number for g in raw_store.open_gaps(engine, group_number, day)}
    if not missing:
        return RecoverResult(stored=(), still_missing=())
    last = raw_store.last_batch_number(engine, group_number, day)
    until = max(missing) if last is None else max(last, max(missing))
    params: dict[str, Any] = {"group_number": group_number}
    if day:
        params["day"] = day
    base = api_url.rstrip("/")
    stored: list[CollectResult] = []
    with httpx.Client(timeout=timeout_s) as client:
        status, body = fetch(
            client,
            base + "/restart_data_generation",
            params,
            max_retries=max_retries,
            backoff_s=backoff_s,
        )
        if status != 200:
            raise CollectError(f"{base}/restart_data_generation answered HTTP {status}")
        for _ in range(until + 1):
            status, body = fetch(
                client,
                base + "/data",
                params,
                max_retries=max_retries,
                backoff_s=backoff_s,
                max_bytes=max_response_bytes,
            )
            if status == 400 and _is_exhausted(body):
                break
            if status != 200:
                raise CollectError(f"{base}/data answered HTTP {status} during the replay")
            payload = parse_payload(body, group_number)
            if payload.batch_number in missing:
                split = split_rows(payload.data)
                kept = _store_payload(engine, group_number, day, payload, split, body, api_url)
                missing.discard(payload.batch_number)
                stored.append(
                    CollectResult(
                        outcome="stored" if kept.created else "already_stored",
                        batch_id=kept.id,
                        batch_number=payload.batch_number,
                        row_count=kept.row_count,
                        rejected_count=kept.rejected_count,
                    )
                )
            if payload.batch_number >= until:
                break
    return RecoverResult(stored=tuple(stored), still_missing=tuple(sorted(missing)))


def _is_exhausted(body: bytes) -> bool:
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("detail") == EXHAUSTED_DETAIL
