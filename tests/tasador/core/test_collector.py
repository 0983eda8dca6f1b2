"""Collector faults against a real HTTP server that answers from a script."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasador.core import db, raw_store
from tasador.core.collector import EXHAUSTED_DETAIL, CollectError, PayloadError, collect_batch
from tasador.core.columns import RAW_COLUMNS

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


def collect(settings, api, **kw):
    kw = {"timeout_s": 2.0, "max_retries": 3, "backoff_s": 0.01, **kw}
    return collect_batch(db.engine("raw", settings), api.url, 1, **kw)


def stored_batches(settings):
    return raw_store.list_batches(db.engine("raw", settings))


def test_server_errors_are_retried_until_success(settings, api):
    api.script = [(503, b"{}", 0), (500, b"oops", 0), batch()]
    result = collect(settings, api)
    assert result.outcome == "stored" and result.row_count == 2 and api.calls == 3


def test_persistent_server_errors_give_a_clear_error_and_write_nothing(settings, api):
    api.script = [(502, b"bad gateway", 0)]
    with pytest.raises(CollectError, match=r"after 4 attempts.*HTTP 502"):
        collect(settings, api)
    assert api.calls == 4 and stored_batches(settings) == []


def test_timeouts_are_retried(settings, api):
    api.script = [(200, b"{}", 1.0), batch()]
    assert collect(settings, api, timeout_s=0.3).outcome == "stored"


def test_exhausted_api_is_a_normal_outcome(settings, api):
    api.script = [(400, json.dumps({"detail": EXHAUSTED_DETAIL}).encode(), 0)]
    result = collect(settings, api)
    assert result.outcome == "exhausted" and result.batch_id is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>not json</html>", "invalid batch"),
        (json.dumps({"group_number": 1, "batch_number": 0}).encode(), "data"),
        (json.dumps({"group_number": 1, "batch_number": 0, "data": [[1, 2, 3]]}).encode(),
         "row 0 has 3 values"),
        (json.dumps({"group_number": 1, "batch_number": 0,
                     "data": [{**ROW, "colour": "red"}]}).encode(), "unknown: \\['colour'\\]"),
        (json.dumps({"group_number": 1, "batch_number": 0,
                     "data": [{k: v for k, v in ROW.items() if k != "price"}]}).encode(),
         "missing: \\['price'\\]"),
        (json.dumps({"group_number": 7, "batch_number": 0, "data": []}).encode(), "group 7"),
    ],
)  # fmt: skip
def test_malformed_payloads_are_clear_errors_and_write_nothing(settings, api, body, message):
    api.script = [(200, body, 0)]
    with pytest.raises(PayloadError, match=message):
        collect(settings, api)
    assert stored_batches(settings) == []


def test_rows_as_lists_in_column_order_are_accepted(settings, api):
    api.script = [batch(rows=[[ROW[c] for c in RAW_COLUMNS]])]
    result = collect(settings, api)
    rows = raw_store.read_batch_rows(db.engine("raw", settings), result.batch_id)
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
