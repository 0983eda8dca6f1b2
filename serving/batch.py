"""Validating a body of listings column by column: the ``/predict`` hot path.

Why: validating listings one :class:`~serving.schema.Listing` model at a time costs 30-45 us
each (its Python validators, one object per row), so a 1,000-row body could not be priced at
100k rows/s. Here a body is parsed and type-checked once, natively by pydantic-core, against a
plain schema of JSON types (:class:`_Sent`: unknown fields, statuses, ranges, text length and
characters, dates), and the rules left (whole numbers, zip codes, blank text, future dates) are
checked on whole columns. The result, :class:`ListingColumns`, is what the fast path scores and
what the inference log writes, without a ``Listing`` per row.

One contract, one set of messages: this check only decides *whether* a body is valid. When it
finds anything wrong (or cannot tell), the caller validates the body again with ``Listing``,
whose 422 names every bad field exactly as before; so a bad body costs the old price and a good
one a fraction of it. tests/serving/test_batch.py checks on generated bodies that both accept
the same listings and keep the same values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any, overload

import numpy as np
from pydantic_core import from_json, to_json

from serving.schema import MAX_TEXT, ZIP_DIGITS, Listing, _zip_text
from tasador.core import cleaning
from tasador.core.columns import STATUSES

FIELDS: tuple[str, ...] = tuple(name for name in Listing.model_fields if name != "price")
_FIELD_SET = frozenset(FIELDS)
WHOLE = ("brokered_by", "bed", "bath", "street")  # integers; floats accepted if whole
TEXT = ("city", "state")
NUMERIC = ("bed", "bath", "acre_lot", "house_size")


class ListingColumns(Sequence[Listing]):
    """Validated listings, one list per field (None: missing), each value as ``Listing`` keeps
    it (whole numbers as int, sizes as float, zip codes padded, text stripped), except the sale
    date: its YYYY-MM-DD text. A sequence of ``Listing``, each made only when asked for
    (``/explain``, the pipeline)."""

    def __init__(
        self,
        columns: dict[str, list[Any]],
        size: int,
        floats: dict[str, np.ndarray] | None = None,
        days: np.ndarray | None = None,
    ) -> None:
        self.columns = columns
        self.size = size
        self._floats = floats or {}
        self._days = days

    @classmethod
    def of(cls, listings: Sequence[Listing]) -> ListingColumns:
        """Columns of validated ``Listing`` objects."""
        if isinstance(listings, ListingColumns):
            return listings
        columns = {f: [getattr(x, f) for x in listings] for f in FIELDS}
        columns["prev_sold_date"] = [
            None if d is None else d.isoformat() for d in columns["prev_sold_date"]
        ]
        return cls(columns, len(listings))

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Listing: ...
    @overload
    def __getitem__(self, index: slice) -> list[Listing]: ...
    def __getitem__(self, index: int | slice) -> Listing | list[Listing]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.size))]
        values = {f: self.columns[f][index] for f in FIELDS}
        if values["prev_sold_date"] is not None:
            values["prev_sold_date"] = date.fromisoformat(values["prev_sold_date"])
        return Listing.model_construct(**{f: v for f, v in values.items() if v is not None})

    def __iter__(self) -> Iterator[Listing]:
        return (self[i] for i in range(self.size))

    def floats(self, field: str) -> np.ndarray:
        """A numeric field (``NUMERIC``) as float64, NaN where missing."""
        if field not in self._floats:
            self._floats[field] = np.array(self.columns[field], dtype=np.float64)
        return self._floats[field]

    def days(self) -> np.ndarray:
        """The sale dates as datetime64[D], NaT where missing."""
        if self._days is None:
            self._days = np.array(self.columns["prev_sold_date"], dtype="datetime64[D]")
        return self._days

    def json_rows(self) -> list[str]:
        """Each listing as ``Listing.model_dump_json(exclude_none=True)`` writes it."""
        columns = [self.columns[f] for f in FIELDS]
        return [
            to_json({f: v for f, v in zip(FIELDS, row, strict=True) if v is not None}).decode()
            for row in zip(*columns, strict=True)
        ]


def listings_json(listings: Sequence[Listing]) -> list[str]:
    """Each listing's JSON for the inference log, column by column when it can be."""
    if isinstance(listings, ListingColumns):
        return listings.json_rows()
    return [listing.model_dump_json(exclude_none=True) for listing in listings]


_BAD = object()  # a zip code the columnar check refuses (``Listing`` then says why)
_NONE = type(None)
_NUMBERS = {int, float, _NONE}
_TEXTS = {str, _NONE}
_ZIPS = {str, int, float, _NONE}
_STATUS_VALUES = {*STATUSES, None}
_RANGES = {
    "brokered_by": (0, 10**15),
    "bed": (0, cleaning.BED_MAX),
    "bath": (0, cleaning.BATH_MAX),
    "acre_lot": (0, cleaning.ACRE_LOT_MAX),
    "street": (0, 10**15),
    "house_size": (cleaning.HOUSE_SIZE_MIN, cleaning.HOUSE_SIZE_MAX),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ISO_DAYS = re.compile(r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2}\n)*")
_FIVE_DIGITS = re.compile(r"(?:[0-9]{5}\n)*")
_OLDEST = np.datetime64(cleaning.OLDEST_SALE.date(), "D")


def _zip(value: Any) -> Any:
    value = _zip_text(value)
    ok = type(value) is str and len(value) == ZIP_DIGITS and value.isascii() and value.isdigit()
    return value if ok else _BAD


class _Refused(Exception):
    """A rule fails somewhere in the body: ``Listing`` says where and why."""


def _require(ok: object) -> None:
    if not ok:
        raise _Refused


def _numbers(columns: dict[str, list[Any]], floats: dict[str, np.ndarray]) -> None:
    """Ranges on whole columns; ids and counts whole (floats -> int), sizes float."""
    for f, (low, high) in _RANGES.items():
        values = columns[f]
        types = set(map(type, values))
        _require(types <= _NUMBERS)
        try:
            x = np.array(values, dtype=np.float64)  # None -> NaN
        except OverflowError:  # an int beyond float range: beyond every range too
            raise _Refused from None
        _require(not ((x < low) | (x > high)).any())
        if f in WHOLE:
            if float in types:
                _require(np.all(np.isnan(x) | (x == np.trunc(x))))
                columns[f] = [int(v) if type(v) is float else v for v in values]
        elif int in types:
            columns[f] = [float(v) if type(v) is int else v for v in values]
        floats[f] = x


def _texts(columns: dict[str, list[Any]]) -> None:
    """Text at most MAX_TEXT characters as sent, no control character, not only blanks."""
    for f in TEXT:
        values = columns[f]
        _require(set(map(type, values)) <= _TEXTS)
        sent = [v for v in values if v is not None]
        if not sent:
            continue
        _require(max(map(len, sent)) <= MAX_TEXT and not _CONTROL.search("".join(sent)))
        stripped = [v if v is None else v.strip() for v in values]
        _require("" not in stripped)
        columns[f] = stripped


def _zips(columns: dict[str, list[Any]]) -> None:
    values = columns["zip_code"]
    _require(set(map(type, values)) <= _ZIPS)
    sent = [v for v in values if v is not None]
    if all(type(v) is str for v in sent) and _FIVE_DIGITS.fullmatch("\n".join(sent) + "\n"):
        return  # the usual case: five-digit text, kept as sent
    zips = [None if v is None else _zip(v) for v in values]
    _require(_BAD not in zips)
    columns["zip_code"] = zips


def _days(columns: dict[str, list[Any]]) -> np.ndarray:
    """Sale dates: YYYY-MM-DD text of a real day, since the oldest sale, not in the future; kept as
    that text (what ``Listing`` writes back), parsed to datetime64 (NaT: missing)."""
    values = columns["prev_sold_date"]
    _require(set(map(type, values)) <= _TEXTS)
    sent = [v for v in values if v is not None]
    # Only the plain form: other spellings pydantic may accept are left to ``Listing``.
    _require(not sent or _ISO_DAYS.fullmatch("\n".join(sent) + "\n"))
    try:
        days = np.array(values, dtype="datetime64[D]")
    except ValueError:  # no such day (2015-02-30)
        raise _Refused from None
    if sent:
        _require(days[~np.isnat(days)].min() >= _OLDEST)
        _require(days[~np.isnat(days)].max() <= np.datetime64(date.today(), "D"))
    return days


def columns_of(rows: Any, max_rows: int) -> ListingColumns | None:
    """Parsed JSON (a list of objects) as validated columns; None if anything is amiss."""
    if type(rows) is not list or not 1 <= len(rows) <= max_rows:
        return None
    if set(map(type, rows)) != {dict} or not set().union(*rows) <= _FIELD_SET:
        return None  # an item is no object, or an unknown field (price included)
    columns = {f: [row.get(f) for row in rows] for f in FIELDS}
    floats: dict[str, np.ndarray] = {}
    try:
        statuses = columns["status"]
        _require(set(map(type, statuses)) <= _TEXTS and set(statuses) <= _STATUS_VALUES)
        _numbers(columns, floats)
        _texts(columns)
        _zips(columns)
        days = _days(columns)
    except _Refused:
        return None
    return ListingColumns(columns, len(rows), floats, days)


class BatchParser:
    """A list of at most ``max_rows`` listings -> columns, or None when ``Listing`` must say
    what is wrong (see the module doc)."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows

    def many(self, body: bytes) -> ListingColumns | None:
        try:
            rows = from_json(body, allow_inf_nan=False)
        except ValueError:
            return None
        return columns_of(rows, self.max_rows)
