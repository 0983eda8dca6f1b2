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
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import httpx
import sqlalchemy as sa

from tasador.core import raw_store
from tasador.core.payload import CollectError, Payload, PayloadError, read_payload
from tasador.core.timings import step

__all__ = ["CollectError", "PayloadError", "ResponseTooLarge", "collect_batch", "recover_gaps"]

log = logging.getLogger(__name__)

EXHAUSTED_DETAIL = "Ya se recolectó toda la información mínima necesaria"
DEFAULT_MAX_RESPONSE_BYTES = 268_435_456
PROGRESS_EVERY_BYTES = 16 << 20
_SUFFIX = ".batch"  # a complete body in the inbox; anything else there is not one

Progress = Callable[[str], None]  # told how the collect goes, in a few words at a time


class ResponseTooLarge(PayloadError):
    """The data API's answer exceeds the size the collector accepts."""


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


def _tell(progress: Progress | None, message: str) -> None:
    log.info("%s", message)
    if progress is not None:
        progress(message)


def _stream_capped(
    response: httpx.Response,
    max_bytes: int,
    url: str,
    write: Callable[[bytes], Any],
    progress: Progress | None = None,
) -> None:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ResponseTooLarge(
            f"{url} announced {int(declared)} bytes, more than the {max_bytes} accepted "
            "(TASADOR_API_MAX_RESPONSE_BYTES); nothing was stored"
        )
    size, told = 0, 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(
                f"{url} sent more than the {max_bytes} bytes accepted "
                "(TASADOR_API_MAX_RESPONSE_BYTES); the partial body was not stored"
            )
        write(chunk)
        if progress is not None and size - told >= PROGRESS_EVERY_BYTES:
            told = size
            _tell(progress, f"received {size / 2**20:,.0f} MiB")


def fetch(
    client: httpx.Client,
    url: str,
    params: dict[str, Any],
    *,
    max_retries: int,
    backoff_s: float,
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    sink: IO[bytes] | None = None,
    progress: Progress | None = None,
) -> tuple[int, bytes]:
    """GET (status, body), the body read up to ``max_bytes``; retries only what cannot have
    moved the API's cursor: a refused or timed-out connection, and 5xx answers.

    With ``sink``, a 200 body is written there as it arrives, never held whole (and the body
    returned is empty); other answers are returned as usual."""
    for attempt in range(max_retries + 1):
        answered = False
        try:
            with client.stream("GET", url, params=params) as response:
                answered = True
                if sink is not None and response.status_code == 200:
                    _stream_capped(response, max_bytes, url, sink.write, progress)
                    body = b""
                else:
                    chunks: list[bytes] = []
                    _stream_capped(response, max_bytes, url, chunks.append)
                    body = b"".join(chunks)
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


@contextmanager
def incoming_body(
    inbox: Path, *, group_number: int, day: str | None, source: str
) -> Iterator[tuple[IO[bytes], Callable[[], Path]]]:
    """A file in the inbox to write a body into as it arrives, and the function that makes it
    a kept body: flushed, fsync'ed and renamed atomically (then the folder fsync'ed).

    The file starts with a JSON line of what the body was asked for; the body follows as
    received. A body not kept by the end of the block (a failed read) is removed."""
    inbox.mkdir(parents=True, exist_ok=True)
    # Time first, so names sort in the order the bodies arrived.
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    meta = json.dumps({"group_number": group_number, "day": day, "source": source})
    temp = inbox / f"{name}.tmp"
    final = temp.with_suffix(_SUFFIX)
    with temp.open("wb") as out:

        def keep() -> Path:
            out.flush()
            os.fsync(out.fileno())
            os.replace(temp, final)
            _fsync_dir(inbox)
            return final

        out.write(meta.encode() + b"\n")
        try:
            yield out, keep
        finally:
            temp.unlink(missing_ok=True)  # kept: renamed already; not kept: partial


def keep_body(inbox: Path, body: bytes, *, group_number: int, day: str | None, source: str) -> Path:
    """Write a whole received body to the inbox atomically and durably; return its path."""
    with incoming_body(inbox, group_number=group_number, day=day, source=source) as (out, keep):
        out.write(body)
        return keep()


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
    engine: sa.Engine, day: str | None, payload: Payload, source: str
) -> raw_store.StoredBatch:
    """One parsed batch into RAW, keyed by the sha256 of the body exactly as received."""
    with step("raw", rows=len(payload.split.rows)):
        return raw_store.store_batch(
            engine,
            group_number=payload.group_number,
            day=day,
            batch_number=payload.batch_number,
            rows=payload.split.rows,
            row_indexes=payload.split.indexes,
            rejected=payload.split.rejected,
            payload_sha256=payload.sha256,
            source=source,
        )


def _read(stream: IO[bytes], group_number: int, progress: Progress | None) -> Payload:
    with step("parse") as timed:
        payload = read_payload(
            stream, group_number, progress=lambda n: _tell(progress, f"read {n:,} rows")
        )
        timed.update(rows=payload.received, rejected=len(payload.split.rejected))
    return payload


def store_body(engine: sa.Engine, path: Path, progress: Progress | None = None) -> CollectResult:
    """Parse and store one inbox body in RAW, then remove it from the inbox.

    A body that is not a batch is moved to ``invalid/`` and raises PayloadError; RAW
    unreachable raises CollectError and leaves the body where it is, for the next collect.
    """
    with path.open("rb") as stream:
        meta = json.loads(stream.readline())
        group_number, day, source = meta["group_number"], meta["day"], meta["source"]
        problem: PayloadError | None = None
        try:
            payload = _read(stream, group_number, progress)
        except PayloadError as exc:
            problem = exc
    if problem is not None:
        kept = _quarantine(path, str(problem))
        raise PayloadError(f"{problem}; the body is kept in {kept}") from None
    split = payload.split
    try:
        stored = _store_payload(engine, day, payload, source)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise CollectError(
            f"RAW could not store batch {payload.batch_number} ({type(exc.orig).__name__}); "
            f"the body is kept in {path} and the next collect stores it first"
        ) from exc
    _tell(progress, f"stored batch {payload.batch_number} in RAW: {stored.row_count:,} rows")
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
    progress: Progress | None = None,
) -> CollectResult:
    """Store the oldest body waiting in ``inbox``; if none waits, ask the data API for the next
    batch of a group, write it to ``inbox`` as it arrives and store it in RAW.

    ``progress`` is told, in a few words, how the collect goes (bytes received, rows read);
    the same lines go to this module's log."""
    waiting = pending_bodies(inbox)
    if waiting:
        _tell(progress, f"storing a body received earlier ({waiting[0].name})")
        result = store_body(engine, waiting[0], progress)
        return dataclasses.replace(result, from_inbox=True)
    params: dict[str, Any] = {"group_number": group_number}
    if day:
        params["day"] = day
    url = api_url.rstrip("/") + "/data"
    path = None
    with (
        step("fetch") as timed,
        incoming_body(inbox, group_number=group_number, day=day, source=api_url) as (sink, keep),
        httpx.Client(timeout=timeout_s, transport=transport) as client,
    ):
        status, body = fetch(
            client,
            url,
            params,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_bytes=max_response_bytes,
            sink=sink,
            progress=progress,
        )
        if status == 200:
            path = keep()
            timed["bytes"] = path.stat().st_size
    if status == 400 and _is_exhausted(body):
        return CollectResult(outcome="exhausted")
    if path is None:
        text = body[:300].decode("utf-8", "replace")
        raise CollectError(f"{url} answered HTTP {status}: {text}")
    return store_body(engine, path, progress)


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
    serve stays a gap. Each replayed body goes through a temporary file, like a collected one.
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
    fetch_args: dict[str, Any] = {"max_retries": max_retries, "backoff_s": backoff_s}
    with httpx.Client(timeout=timeout_s) as client:
        status, _ = fetch(client, base + "/restart_data_generation", params, **fetch_args)
        if status != 200:
            raise CollectError(f"{base}/restart_data_generation answered HTTP {status}")
        for _ in range(until + 1):
            # A replayed body need not outlive this call (the replay can be run again).
            with tempfile.TemporaryFile() as sink:
                status, body = fetch(
                    client,
                    base + "/data",
                    params,
                    max_bytes=max_response_bytes,
                    sink=sink,
                    **fetch_args,
                )
                if status == 400 and _is_exhausted(body):
                    break
                if status != 200:
                    raise CollectError(f"{base}/data answered HTTP {status} during the replay")
                sink.seek(0)
                payload = _read(sink, group_number, None)
            if payload.batch_number in missing:
                kept = _store_payload(engine, day, payload, api_url)
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
