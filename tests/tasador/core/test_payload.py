"""Reading a batch body incrementally: the same answer whatever the chunk size, every row kept
(as columns or rejected with its reason), and bodies that are not batches refused clearly."""

from __future__ import annotations

import hashlib
import io
import json
import math
import re

import pytest

from tasador.core.columns import RAW_COLUMNS
from tasador.core.payload import PayloadError, read_payload

ROW = {
    "brokered_by": 40618.0, "status": "for_sale", "price": 239800.0, "bed": 3.0, "bath": 2.0,
    "acre_lot": 0.28, "street": 1693508.0, "city": "Graham", "state": "North Carolina",
    "zip_code": 27253.0, "house_size": 1105.0, "prev_sold_date": "2021-10-22",
}  # fmt: skip
VALUES = tuple(ROW[c] for c in RAW_COLUMNS)


def body(rows, **header) -> bytes:
    document = {"group_number": 1, "day": None, "batch_number": 3, **header, "data": rows}
    return json.dumps(document, ensure_ascii=False).encode()


def read(data: bytes, chunk_bytes: int = 1 << 20, **kw):
    return read_payload(io.BytesIO(data), 1, chunk_bytes=chunk_bytes, **kw)


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1 << 20])
def test_any_chunk_size_reads_the_same_rows_and_hash(chunk_bytes):
    rows = [
        ROW,
        [ROW[c] for c in RAW_COLUMNS],  # a list in column order
        {**ROW, "city": "São Paulo [norte]"},  # multi-byte text and a bracket inside a string
        {**ROW, "price": 123456789012345},  # a long number across chunk ends
        {**ROW, "city": {"nested": 1}},  # rejected
    ]
    data = b"  \n" + body(rows, batch_number=12345, extra={"ignored": [1, 2]}) + b"\n "
    payload = read(data, chunk_bytes)
    assert (payload.group_number, payload.batch_number, payload.day) == (1, 12345, None)
    assert payload.sha256 == hashlib.sha256(data).hexdigest()
    assert payload.split.indexes == [0, 1, 2, 3]
    assert payload.split.rows[:2] == [VALUES, VALUES]
    assert payload.split.rows[2][RAW_COLUMNS.index("city")] == "São Paulo [norte]"
    assert payload.split.rows[3][RAW_COLUMNS.index("price")] == 123456789012345
    [rejected] = payload.split.rejected
    assert rejected.row_index == 4 and "city is not a single value" in rejected.reason
    assert json.loads(rejected.content) == rows[4]


def test_the_header_may_follow_the_rows():
    data = json.dumps({"data": [ROW], "batch_number": 2, "group_number": 1}).encode()
    payload = read(data, 5)
    assert payload.batch_number == 2 and payload.split.rows == [VALUES]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({**ROW, "city": "Gra\x00ham"}, "city contains a NUL character"),
        ({**ROW, "city": "\udc80"}, "city is not valid UTF-8 text"),
        ([1, 2, 3], "row 0 has 3 values"),
        ({k: v for k, v in ROW.items() if k != "price"}, "missing: \\['price'\\]"),
        ("garbage", "row 0 is a str"),
        ([*VALUES[:-1], [1]], "prev_sold_date is not a single value"),
    ],
)  # fmt: skip
def test_escaped_or_odd_rows_take_the_careful_path(row, reason):
    payload = read(json.dumps({"group_number": 1, "batch_number": 0, "data": [row]}).encode())
    assert payload.split.rows == []
    [rejected] = payload.split.rejected  # kept whole, with its reason
    assert json.loads(rejected.content) == row
    assert re.search(reason, rejected.reason)


def test_progress_is_told_the_rows_read():
    told: list[int] = []
    payload = read(body([ROW] * 3), 16, progress=told.append)
    assert payload.received == 3 and told[-1] == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<html>not json</html>", "expected a JSON object"),
        (b"", "expected a JSON object"),
        (b'{"group_number": 1, "batch_number": 0}', "data: Field required"),
        (b'{"group_number": 1, "batch_number": 0, "data": {}}', "valid list"),
        (b'{"group_number": 1, "data": []}', "batch_number: missing"),
        (b'{"group_number": "one", "batch_number": 0, "data": []}', "not an integer"),
        (b'{"group_number": 1, "batch_number": 0, "data": [{"a": 1}', "',' or ']'"),
        (b'{"group_number": 1, "batch_number": 0, "data": [{"a": tru}]}', "not JSON"),
        (b'{"group_number": 1, "batch_number": 0, "data": []} []', "more after the batch"),
        (b'{"group_number": 1, "batch_number": 0, "data": ["\xff"]}', "not UTF-8"),
        (b'{"group_number": 2, "batch_number": 0, "data": []}', "answered for group 2"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("chunk_bytes", [3, 1 << 20])
def test_a_body_that_is_no_batch_is_refused_with_the_reason(data, message, chunk_bytes):
    with pytest.raises(PayloadError, match=message):
        read(data, chunk_bytes)


# The layouts a sender may write: compact, json.dumps' defaults (", " and ": ", non-ASCII text
# as \u escapes), indented.
LAYOUTS = {
    "compact": {"separators": (",", ":"), "ensure_ascii": False},
    "spaced": {},
    "indented": {"indent": 2},
}
ODD_ROWS = [
    dict(reversed(ROW.items())),  # keys in another order
    {**ROW, "city": "Bogotá ☕ 😀"},  # \u escapes, a surrogate pair among them
    {**ROW, "city": 'a}, {"b": [1]}, '},  # what looks like a row's end inside a string
    {**ROW, "street": 10**30},  # an integer wider than 64 bits, kept exact
    {**ROW, "price": float("nan")},  # NaN: not JSON, but Python writes it
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("chunk_bytes", [97, 4096, 1 << 20])
def test_any_layout_and_key_order_reads_the_same_rows(layout, chunk_bytes):
    rows = [ROW] * 300 + ODD_ROWS + [ROW] * 300 + [{**ROW, "city": {"nested": 1}}] + [ROW] * 50
    document = {"group_number": 1, "batch_number": 7, "data": rows, "day": "2024-01-02"}
    data = json.dumps(document, **LAYOUTS[layout]).encode()
    payload = read(data, chunk_bytes)
    assert (payload.batch_number, payload.day) == (7, "2024-01-02")
    assert payload.sha256 == hashlib.sha256(data).hexdigest()
    kept = [i for i in range(len(rows)) if i != 605]
    assert payload.split.indexes == kept
    expected = [tuple(rows[i][c] for c in RAW_COLUMNS) for i in kept]
    nan_at = kept.index(304)
    assert math.isnan(payload.split.rows[nan_at][RAW_COLUMNS.index("price")])  # NaN != NaN
    del expected[nan_at], payload.split.rows[nan_at]
    assert payload.split.rows == expected
    assert type(payload.split.rows[303][RAW_COLUMNS.index("street")]) is int
    [rejected] = payload.split.rejected
    assert rejected.row_index == 605 and "city is not a single value" in rejected.reason


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({**ROW, "city": "Gra\x00ham"}, "city contains a NUL character"),
        ({**ROW, "city": "\ud800"}, "city is not valid UTF-8 text"),
        ({k: v for k, v in ROW.items() if k != "price"}, "missing: \\['price'\\]"),
    ],
)  # fmt: skip
def test_an_unstorable_row_among_many_is_set_aside_alone(layout, row, reason):
    rows = [ROW] * 200 + [row] + [ROW] * 200
    layout_as_ascii = {**LAYOUTS[layout], "ensure_ascii": True}  # a lone surrogate as an escape
    data = json.dumps({"group_number": 1, "batch_number": 0, "data": rows}, **layout_as_ascii)
    payload = read(data.encode(), 4096)
    assert payload.split.indexes == [i for i in range(401) if i != 200]
    assert payload.split.rows == [VALUES] * 400
    [rejected] = payload.split.rejected
    assert rejected.row_index == 200 and re.search(reason, rejected.reason)
    assert json.loads(rejected.content) == row


@pytest.mark.parametrize("layout", LAYOUTS)
def test_bad_json_deep_in_a_body_is_refused_where_it_is(layout):
    document = {"group_number": 1, "batch_number": 0, "data": [ROW] * 500}
    text = json.dumps(document, **LAYOUTS[layout])
    cut = text.rindex('"status"')  # in a row near the end, many chunks in
    text = text[:cut] + '"x": tru, ' + text[cut:]
    with pytest.raises(PayloadError, match=f"not JSON at character {cut + 5} "):
        read(text.encode(), 4096)
