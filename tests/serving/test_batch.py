"""The columnar check of a list of listings agrees with the ``Listing`` model it stands in for."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest
from pydantic import ValidationError

from serving.batch import BatchParser, ListingColumns
from serving.inference_log import Entry
from serving.schema import Listing, listings_adapter
from tasador.core import cleaning
from tasador.core.columns import STATUSES
from tests.helpers.serving import LISTING

MAX_ROWS = 8
PARSER = BatchParser(MAX_ROWS)
ADAPTER = listings_adapter(MAX_ROWS)
TODAY = date.today()
BED, BATH, ACRES = cleaning.BED_MAX, cleaning.BATH_MAX, cleaning.ACRE_LOT_MAX
SIZE_MIN, SIZE_MAX, OLDEST = cleaning.HOUSE_SIZE_MIN, cleaning.HOUSE_SIZE_MAX, cleaning.OLDEST_SALE

# Per field: values the schema accepts (``_VALID``), and also values at and past its bounds and
# wrong JSON types (``_ANY``). A generated listing has at most two fields drawn from ``_ANY``, so
# that most are valid but for one value: the columns must then refuse exactly what Listing does.
_WRONG = st.sampled_from([True, False, [], {}, [1], {"a": 1}, "3"])
_ID_VALID = st.one_of(st.integers(0, 10**15), st.sampled_from([40618.0, 1e15, 0.0, -0.0]))
_ID_ANY = st.one_of(
    _ID_VALID, st.integers(-2, 2), st.sampled_from([-1, 10**15 + 1, 1e15 + 2, 0.5, 10**400])
)
_BED_VALID = st.one_of(st.integers(0, BED), st.sampled_from([0.0, 3.0, float(BED)]))
_BED_ANY = st.one_of(
    _BED_VALID,
    st.sampled_from([-1, BED + 1, BED + 0.5, 2.5, -0.5, 1e300, 10**400]),
)
_BATH_VALID = st.one_of(st.integers(0, BATH), st.sampled_from([2.0, float(BATH)]))
_BATH_ANY = st.one_of(_BATH_VALID, st.sampled_from([-1, BATH + 1, 1.5, BATH + 1.0]))
_ACRES_VALID = st.one_of(
    st.floats(0, ACRES),
    st.integers(0, 10),
    st.sampled_from([ACRES, -0.0]),
)
_ACRES_ANY = st.one_of(_ACRES_VALID, st.sampled_from([-0.01, ACRES + 1, -1, 1e999]))
_SIZE_VALID = st.one_of(
    st.floats(SIZE_MIN, SIZE_MAX),
    st.integers(int(SIZE_MIN), 5_000),
)
_SIZE_ANY = st.one_of(
    _SIZE_VALID,
    st.sampled_from([SIZE_MIN - 1, 99, 20, SIZE_MAX + 0.5, 0]),
)
_TEXT_VALID = st.one_of(
    st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=8).filter(str.strip),
    st.sampled_from(["Austin", "  Austin ", "x" * 100, " " * 99 + "x", "caf\u00e9", "\U0001f3e0"]),
)
_TEXT_ANY = st.one_of(
    _TEXT_VALID,
    st.text(max_size=6),
    st.sampled_from([" ", "", "\u3000", "\xa0", "x" * 101, " " * 101, "Aus\x00tin", "a\x7f"]),
    st.sampled_from(["tab\t", "new\nline", "end\n", "\x1f"]),
)
_ZIP_VALID = st.one_of(
    st.integers(0, 99_999),
    st.text("0123456789", min_size=1, max_size=5),
    st.sampled_from([501.0, 78701.0, 0.0, 99_999.0, "00501"]),
)
_ZIP_ANY = st.one_of(
    _ZIP_VALID,
    st.text("0123456789", max_size=7),
    st.sampled_from([-1, 100_000, 7.5, -5.0, 1e5, "12a45", " 2134", "\u0661\u0662", "12345\n"]),
)
_DAY_VALID = st.dates(OLDEST.date(), TODAY).map(date.isoformat)
_DAY_ANY = st.one_of(
    _DAY_VALID,
    st.dates(date(1890, 1, 1), TODAY + timedelta(days=3)).map(date.isoformat),
    st.sampled_from(
        ["2015-02-30", "2016-02-29", "2015-13-01", "yesterday", "2015-6-1", "1899-12-31"]
    ),
    st.sampled_from(
        ["20150601", "2015-06-01T00:00:00", "2015-06-01Z", "2015-06-01 ", "0001-01-01"]
    ),
    st.integers(0, 10**9),
)
_STATUS_VALID = st.sampled_from(STATUSES)
_STATUS_ANY = st.one_of(_STATUS_VALID, st.sampled_from(["pending", "", "Sold", "sold "]))
_VALUES: dict[str, tuple[Any, Any]] = {
    "brokered_by": (_ID_VALID, _ID_ANY),
    "status": (_STATUS_VALID, _STATUS_ANY),
    "bed": (_BED_VALID, _BED_ANY),
    "bath": (_BATH_VALID, _BATH_ANY),
    "acre_lot": (_ACRES_VALID, _ACRES_ANY),
    "street": (_ID_VALID, _ID_ANY),
    "city": (_TEXT_VALID, _TEXT_ANY),
    "state": (_TEXT_VALID, _TEXT_ANY),
    "zip_code": (_ZIP_VALID, _ZIP_ANY),
    "house_size": (_SIZE_VALID, _SIZE_ANY),
    "prev_sold_date": (_DAY_VALID, _DAY_ANY),
}


@st.composite
def listing(draw: st.DrawFn) -> dict[str, Any]:
    probed = draw(st.lists(st.sampled_from(list(_VALUES)), max_size=2))
    out: dict[str, Any] = {}
    for field, (valid, anything) in _VALUES.items():
        roll = draw(st.integers(0, 9))
        if roll < 3 and field not in probed:
            continue  # absent
        if roll == 3:
            out[field] = None
        elif field in probed:
            out[field] = draw(st.one_of(anything, _WRONG) if roll == 4 else anything)
        else:
            out[field] = draw(valid)
    extra = draw(st.sampled_from([None] * 20 + ["price", "colour"]))
    if extra is not None:
        out[extra] = draw(st.sampled_from([350_000, None]))
    return out


def slow(body: bytes) -> list[Listing] | None:
    try:
        return ADAPTER.validate_json(body)
    except ValidationError:
        return None


def plain_dates(rows: list[Any]) -> bool:
    """Every sale date sent as YYYY-MM-DD: the only spelling the columnar check takes itself."""
    return all(
        not isinstance(r, dict)
        or not isinstance(r.get("prev_sold_date"), str)
        or re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", r["prev_sold_date"])
        for r in rows
    )


def agree(body: bytes) -> ListingColumns | None:
    """What the columnar check keeps is what ``Listing`` keeps, and it refuses only what
    ``Listing`` refuses (dates in other spellings aside: those it leaves to ``Listing``)."""
    fast, expected = PARSER.many(body), slow(body)
    if fast is None:
        assert expected is None or not plain_dates(json.loads(body)), body
        return None
    assert expected is not None, body
    assert list(fast) == expected
    assert fast.json_rows() == [x.model_dump_json(exclude_none=True) for x in expected]
    assert ListingColumns.of(expected).columns == fast.columns
    return fast


@hypothesis.settings(max_examples=1_500, deadline=None, database=None)
@hypothesis.given(rows=st.lists(listing(), min_size=1, max_size=3))
def test_the_columns_keep_and_refuse_what_listing_does(rows: list[dict[str, Any]]) -> None:
    kept = agree(json.dumps(rows).encode()) is not None
    hypothesis.event("kept" if kept else "refused")


@hypothesis.settings(max_examples=300, deadline=None, database=None)
@hypothesis.given(rows=st.lists(st.sampled_from([LISTING, {}, {"bed": 3.0, "zip_code": 501}])))
def test_valid_lists_are_taken_by_the_columns_alone(rows: list[dict[str, Any]]) -> None:
    body = json.dumps(rows).encode()
    if 1 <= len(rows) <= MAX_ROWS:
        assert agree(body) is not None
    else:
        assert PARSER.many(body) is None and slow(body) is None


@pytest.mark.parametrize(
    "body",
    [b"[]", b"[1]", b"[[]]", b"[null]", b"{}", b"[{}, 3]", b"[NaN]", b'[{"bed": NaN}]', b"[{",
     b'[{"bed": 1e999}]', b'[{"house_size": -1e999}]', b'[{"bed": 3, "bed": -1}]',
     b'[{"city": "\\ud800"}]', b'[{"prev_sold_date": null}]', b'[{"zip_code": 1e999}]'],
)  # fmt: skip
def test_odd_bodies_agree(body: bytes) -> None:
    agree(body)


def test_a_date_in_the_future_is_left_to_listing() -> None:
    today = date.today()  # not TODAY: a suite that runs past midnight would make it yesterday
    tomorrow = (today + timedelta(days=1)).isoformat()
    assert agree(json.dumps([{"prev_sold_date": today.isoformat()}]).encode()) is not None
    assert agree(json.dumps([{"prev_sold_date": tomorrow}]).encode()) is None


def test_the_inference_log_gets_the_same_rows_from_columns() -> None:
    body = json.dumps([LISTING, {}, {"bed": 2.0, "zip_code": 501, "city": " Waco "}]).encode()
    columns = PARSER.many(body)
    assert columns is not None
    when = datetime.now(UTC)
    rows = Entry("predict", 200, when, 1.0, columns, [1.0, 2.0, 3.0]).to_rows()
    expected = Entry("predict", 200, when, 1.0, list(columns), [1.0, 2.0, 3.0]).to_rows()
    for row in (*rows, *expected):
        del row["request_id"]
    assert rows == expected
    assert [r["row_index"] for r in rows] == [0, 1, 2]
    assert json.loads(rows[2]["inputs"]) == {"bed": 2, "zip_code": "00501", "city": "Waco"}
