"""Collector faults against real HTTP servers: one answering from a script, one sending its
body in stalls, and the real data API app (uvicorn in a thread); RAW is a real PostgreSQL.

Every fault test checks that no row is lost (stored + rejected == served) or duplicated."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import uvicorn

from datasource.api import create_app
from tasador.core import clean_store, db, raw_store
from tasador.core.collector import (
    EXHAUSTED_DETAIL,
    CollectError,
    PayloadError,
    ResponseTooLarge,
    collect_batch,
    pending_bodies,
    recover_gaps,
)
from tasador.core.columns import RAW_COLUMNS
from tasador.core.services import free_port
from tasador.loop.status import gaps_text, status

ROW = {
    "brokered_by": 40618.0, "status": "for_sale", "price": 239800.0, "bed": 3.0, "bath": 2.0,
    "acre_lot": 0.28, "street": 1693508.0, "city": "Graham", "state": "North Carolina",
    "zip_code": 27253.0, "house_size": 1105.0, "prev_sold_date": "2021-10-22",
}  # fmt: skip


def batch(number=0, rows=(ROW, ROW), group=1) -> tuple[int, bytes, float]:
    body = {"group_number": group, "day": None, "batch_number": number, "data": list(rows)}
    return 200, json.dumps(body).encode(), 0.0


class ScriptedAPI:
    """Answers each GET with the next (status, body, delay) of its script; repeats the last."""

    def __init__(self) -> None:
        self.script: list[tuple[int, bytes, float]] = []
        self.calls = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, delay = api.script[min(api.calls, len(api.script) - 1)]
                api.calls += 1
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def api() -> Iterator[ScriptedAPI]:
    scripted = ScriptedAPI()
    yield scripted
    scripted.server.shutdown()


class StallingAPI:
    """Sends 200 headers and ``parts`` of a body (no Content-Length), sleeping ``pause`` after
    each part but the last: a body that stalls, or one longer than the collector accepts."""

    def __init__(self, parts: list[bytes], pause: float) -> None:
        self.calls = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.calls += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                for i, part in enumerate(parts):
                    try:
                        self.wfile.write(part)
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the collector gave up, as it should
                    if i < len(parts) - 1:
                        time.sleep(pause)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stalling() -> Iterator[list[StallingAPI]]:
    made: list[StallingAPI] = []
    yield made
    for api in made:
        api.server.shutdown()
        api.server.server_close()


@pytest.fixture
def data_api(tmp_path) -> Iterator[str]:
    """The real data API app (course scenario, 200-row batches) served by uvicorn on a port."""
    app = create_app(scale=0.001, state_dir=tmp_path / "datasource", seed=5)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the data API did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def collect(settings, api, engine=None, **kw):
    kw = {"timeout_s": 2.0, "max_retries": 3, "backoff_s": 0.01, **kw}
    url = api if isinstance(api, str) else api.url
    engine = engine or db.engine("raw", settings.databases)
    return collect_batch(engine, url, 1, inbox=settings.inbox_dir, **kw)


def stored_batches(settings):
    return raw_store.list_batches(db.engine("raw", settings.databases))


def stored_rows(settings) -> int:
    """Rows RAW holds, as columns or rejected."""
    return sum(b.row_count + b.rejected_count for b in stored_batches(settings))


def served_sizes(url: str) -> list[int]:
    return [b["rows"] for b in httpx.get(url + "/").json()["batches"]]


def test_server_errors_are_retried_until_success(settings, api):
    api.script = [(503, b"{}", 0), (500, b"oops", 0), batch()]
    result = collect(settings, api)
    assert result.outcome == "stored" and result.row_count == 2 and api.calls == 3


def test_persistent_server_errors_give_a_clear_error_and_write_nothing(settings, api):
    api.script = [(502, b"bad gateway", 0)]
    with pytest.raises(CollectError, match=r"after 4 attempts.*HTTP 502"):
        collect(settings, api)
    assert api.calls == 4 and stored_batches(settings) == []


def test_a_timeout_after_the_request_was_sent_is_not_retried(settings, api):
    """The API may have moved its cursor: a retry would silently get the next batch."""
    api.script = [(200, b"{}", 1.0), batch()]
    with pytest.raises(CollectError, match="not retried"):
        collect(settings, api, timeout_s=0.3)
    assert api.calls == 1 and stored_batches(settings) == []


def test_a_refused_connection_is_retried(settings):
    started = time.monotonic()
    with pytest.raises(CollectError, match=r"after 3 attempts.*ConnectError"):
        collect(settings, f"http://127.0.0.1:{free_port()}", max_retries=2)
    assert time.monotonic() - started < 10 and stored_batches(settings) == []


def test_exhausted_api_is_a_normal_outcome(settings, api):
    api.script = [(400, json.dumps({"detail": EXHAUSTED_DETAIL}).encode(), 0)]
    result = collect(settings, api)
    assert result.outcome == "exhausted" and result.batch_id is None


# Indented, with a chunk of good rows read before the bad one: still nothing stored.
BAD_DEEP_IN_AN_INDENTED_BODY = (
    json.dumps({"group_number": 1, "batch_number": 0, "data": [ROW] * 4000 + ["BAD"]}, indent=2)
    .replace('"BAD"', "tru")
    .encode()
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>not json</html>", "invalid batch"),
        (json.dumps({"group_number": 1, "batch_number": 0}).encode(), "data"),
        (json.dumps({"group_number": 7, "batch_number": 0, "data": []}).encode(), "group 7"),
        (BAD_DEEP_IN_AN_INDENTED_BODY, "not JSON at character"),
    ],
)  # fmt: skip
def test_a_body_that_is_no_batch_is_a_clear_error_and_kept(settings, api, body, message):
    api.script = [(200, body, 0)]
    with pytest.raises(PayloadError, match=message):
        collect(settings, api)
    assert stored_batches(settings) == [] and pending_bodies(settings.inbox_dir) == []
    kept = list((settings.inbox_dir / "invalid").glob("*.batch"))
    assert len(kept) == 1 and kept[0].read_bytes().endswith(body)
    api.script = [batch(number=1)]  # the next collect is not blocked by it
    assert collect(settings, api).outcome == "stored"


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ([1, 2, 3], "row 1 has 3 values"),
        ({**ROW, "colour": "red"}, "unknown: \\['colour'\\]"),
        ({k: v for k, v in ROW.items() if k != "price"}, "missing: \\['price'\\]"),
        ("garbage", "row 1 is a str"),
        ({**ROW, "city": {"name": "Graham"}}, "city is not a single value"),
        ({**ROW, "city": "Gra\x00ham"}, "city contains a NUL character"),
        ({**ROW, "street": "12\x00"}, "street contains a NUL character"),
    ],
)  # fmt: skip
def test_a_row_that_cannot_be_stored_is_kept_in_rejected_rows(settings, api, bad_row, reason):
    api.script = [batch(rows=[ROW, bad_row, ROW])]
    result = collect(settings, api)
    assert (result.outcome, result.row_count, result.rejected_count) == ("stored", 2, 1)
    engine = db.engine("raw", settings.databases)
    assert list(raw_store.read_batch_rows(engine, result.batch_id).index) == [0, 2]
    [rejected] = raw_store.read_rejected_rows(engine, result.batch_id)
    assert rejected.row_index == 1 and json.loads(rejected.content) == bad_row
    assert re.search(reason, rejected.reason)
    assert stored_rows(settings) == 3  # lost: 0
    report = clean_store.clean_batch(
        engine, db.engine("clean", settings.databases), result.batch_id
    )
    assert report.report.rows_in == 2
    batch_row = status(settings, models=False).batches[0]
    assert (batch_row.rows_received, batch_row.rows_rejected) == (3, 1)


def test_rows_as_lists_in_column_order_are_accepted(settings, api):
    api.script = [batch(rows=[[ROW[c] for c in RAW_COLUMNS]])]
    result = collect(settings, api)
    rows = raw_store.read_batch_rows(db.engine("raw", settings.databases), result.batch_id)
    assert rows.iloc[0]["city"] == "Graham" and rows.iloc[0]["zip_code"] == "27253.0"


def test_collecting_the_same_batch_three_times_keeps_one_copy(settings, api):
    api.script = [batch(number=4)]
    outcomes = [collect(settings, api).outcome for _ in range(3)]
    assert outcomes == ["stored", "already_stored", "already_stored"]
    assert len(stored_batches(settings)) == 1


def test_client_errors_other_than_exhaustion_are_not_retried(settings, api):
    api.script = [(404, b'{"detail": "Not Found"}', 0)]
    with pytest.raises(CollectError, match="HTTP 404"):
        collect(settings, api)
    assert api.calls == 1


def test_a_body_that_stalls_is_not_retried_and_not_stored(settings, stalling):
    _, body, _ = batch()
    stalling.append(api := StallingAPI([body[:40], body[40:]], pause=2.0))
    with pytest.raises(CollectError, match=r"while sending its body.*not retried"):
        collect(settings, api, timeout_s=0.3)
    assert api.calls == 1 and stored_batches(settings) == []
    assert pending_bodies(settings.inbox_dir) == []  # a partial body is no batch to keep
    assert not settings.inbox_dir.exists() or not list(settings.inbox_dir.iterdir())


def test_an_announced_body_over_the_cap_is_refused_unread(settings, api):
    api.script = [batch(rows=[ROW] * 50)]
    with pytest.raises(ResponseTooLarge, match=r"announced .* more than the 2048"):
        collect(settings, api, max_response_bytes=2048)
    assert api.calls == 1 and stored_batches(settings) == []
    assert pending_bodies(settings.inbox_dir) == []


def test_a_streamed_body_over_the_cap_stops_the_read(settings, stalling):
    _, body, _ = batch(rows=[ROW] * 50)
    parts = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    stalling.append(api := StallingAPI(parts, pause=0.01))
    with pytest.raises(ResponseTooLarge, match="partial body was not stored"):
        collect(settings, api, max_response_bytes=2048)
    assert api.calls == 1 and stored_batches(settings) == []
    assert pending_bodies(settings.inbox_dir) == []


@pytest.mark.server
def test_raw_down_after_the_answer_keeps_the_body_for_the_next_collect(settings, data_api):
    closed = f"postgresql+psycopg://tasador:x@127.0.0.1:{free_port()}/raw"
    with pytest.raises(CollectError, match="the next collect stores it first"):
        collect(settings, data_api, engine=db.engine_for(closed), max_retries=0)
    assert len(pending_bodies(settings.inbox_dir)) == 1 and stored_batches(settings) == []

    kept = collect(settings, data_api)  # RAW is back: the kept body goes first
    assert (kept.outcome, kept.batch_number, kept.from_inbox) == ("stored", 0, True)
    assert pending_bodies(settings.inbox_dir) == []
    after = collect(settings, data_api)
    assert (after.batch_number, after.from_inbox, after.gaps) == (1, False, ())

    sizes = served_sizes(data_api)
    assert [b.batch_number for b in stored_batches(settings)] == [0, 1]  # no hole, no repeat
    assert stored_rows(settings) == sizes[0] + sizes[1]  # lost: 0, duplicated: 0
    assert raw_store.open_gaps(db.engine("raw", settings.databases)) == []


@pytest.mark.server
def test_a_skipped_batch_is_a_gap_in_status_that_recover_fills(settings, data_api):
    lost = httpx.get(data_api + "/data", params={"group_number": 1})  # served, never stored
    assert lost.json()["batch_number"] == 0
    first = collect(settings, data_api)
    assert (first.batch_number, first.gaps) == (1, (0,))

    report = status(settings, models=False)
    assert [(g.group, g.batch_number) for g in report.gaps] == [(1, 0)]
    assert '"gaps"' in report.model_dump_json() and "tasador recover --group 1" in gaps_text(
        report.gaps
    )

    engine = db.engine("raw", settings.databases)
    recovered = recover_gaps(engine, data_api, 1, timeout_s=5.0, backoff_s=0.01)
    assert [r.batch_number for r in recovered.stored] == [0] and recovered.still_missing == ()
    assert raw_store.open_gaps(engine) == [] and status(settings, models=False).gaps == []
    assert recover_gaps(engine, data_api, 1).stored == ()  # nothing left to do

    after = collect(settings, data_api)  # the API's cursor is back where it was
    assert (after.batch_number, after.gaps) == (2, ())
    numbers = sorted(b.batch_number for b in stored_batches(settings))
    assert numbers == [0, 1, 2]  # no hole, no repeat
    sizes = served_sizes(data_api)
    assert stored_rows(settings) == sum(sizes[:3])
    assert raw_store.read_batch_rows(engine, recovered.stored[0].batch_id).shape[0] == sizes[0]
