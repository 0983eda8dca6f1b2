"""The rows of the inference log: what a request hands over (:class:`Entry`), and how its rows
reach RAW's ``inference_requests`` (serving.inference_log buffers, spools and writes them).

Rows are written in one transaction per pass: COPY into a temporary table, then ``INSERT ... ON
CONFLICT DO NOTHING`` on ``(request_id, row_index)``, so writing the same rows twice, e.g. after
a lost commit acknowledgement, adds nothing. The COPY payload is built column by column as COPY
text, in a few native calls per column rather than some per value; an entry becomes row dicts
(:data:`Row`) only when its rows cannot be written at once: they must wait, be spooled, or be
halved to find a row the database refuses.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from serving.batch import listings_json
from serving.schema import Listing
from tasador.core import db

# The columns in COPY order: first the values all rows of a request share (made COPY text once
# per request, see _entry_text), then those of each row.
SHARED = (
    "request_id",
    "requested_at",
    "endpoint",
    "model_name",
    "model_version",
    "latency_ms",
    "status_code",
)
COLUMNS = (*SHARED, "row_index", "inputs", "prediction")
# One inference_requests row, JSON-ready (what spool files hold). Its "inputs" is JSON text
# (a listing, serialized by pydantic in one native call) or a JSON-ready dict (a refused body).
Row = dict[str, Any]
MAX_ERROR_BODY = 2_000  # characters of a refused body kept in the log


@dataclass(frozen=True)
class Entry:
    """One request, as the request path hands it over (no serialization done yet)."""

    endpoint: str
    status_code: int
    requested_at: datetime
    latency_ms: float
    listings: Sequence[Listing] = ()
    predictions: Sequence[float] | None = None
    model_name: str | None = None
    model_version: str | None = None
    body: str | None = None  # a refused request's body (truncated)
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def rows(self) -> int:
        return max(1, len(self.listings))

    def _common(self) -> dict[str, Any]:
        """The values every row of this request shares (``SHARED``, in that order)."""
        return {
            "request_id": str(self.request_id),
            "requested_at": self.requested_at.isoformat(),
            "endpoint": self.endpoint,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "latency_ms": self.latency_ms,
            "status_code": self.status_code,
        }

    def _body(self) -> dict[str, str]:
        # NUL is the one character PostgreSQL's jsonb refuses: one such body must not make its
        # whole batch unwritable.
        return {"body": (self.body or "")[:MAX_ERROR_BODY].replace("\x00", "\ufffd")}

    def _predictions(self) -> Sequence[float | None]:
        return self.predictions or [None] * len(self.listings)

    @property
    def prices_match(self) -> bool:
        """One price per listing, or none at all (a refused request's predictions are unused)."""
        return (
            not self.listings or not self.predictions or len(self.predictions) == len(self.listings)
        )

    def to_rows(self) -> list[Row]:
        common = self._common()
        if not self.listings:
            return [{**common, "row_index": 0, "inputs": self._body(), "prediction": None}]
        return [
            {**common, "row_index": i, "inputs": inputs, "prediction": price}
            for i, (inputs, price) in enumerate(
                zip(listings_json(self.listings), self._predictions(), strict=True)
            )
        ]


# --- COPY text format: one line per row, values tab-separated, NULL as \N ---------------------

NULL = "\\N"
SMALL = 8  # a column of at most this many values is made text value by value (no type check)


def _escape(text: str) -> str:
    """Text as a COPY value: backslash, tab, newline and carriage return are COPY's syntax."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _value(value: Any) -> str:
    """One value of any JSON-ready type as COPY text (a request's shared values, a column's odd
    values). Floats as ``repr`` writes them: the shortest text that reads back as the same
    float."""
    kind = type(value)  # the usual types first, by identity: this runs per request
    if kind is str:
        return _escape(value)
    if kind is float:
        return float.__repr__(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return NULL
    if isinstance(value, float):  # numpy's float64, say
        return float.__repr__(value)
    if isinstance(value, dict | list):
        return _escape(json.dumps(value))  # a refused body's inputs
    return _escape(str(value))


def _texts(values: Sequence[str]) -> Sequence[str]:
    """Escaped text values; one scan of the joined column finds the usual case, nothing to
    escape (a listing's JSON has no raw control character, and rarely a backslash)."""
    joined = "\n".join(values)
    if "\t" in joined or "\r" in joined or joined.count("\n") != len(values) - 1:
        return list(map(_escape, values))
    if "\\" in joined:
        return joined.replace("\\", "\\\\").split("\n")
    return values


def _column(values: Sequence[Any]) -> Sequence[str]:
    """A column as COPY text: in native calls when its values are all of one plain type."""
    if len(values) <= SMALL:
        return list(map(_value, values))
    kinds = set(map(type, values))
    if kinds == {type(None)}:
        return [NULL] * len(values)
    if kinds == {str}:
        return _texts(values)
    if kinds == {float}:
        return list(map(float.__repr__, values))
    if kinds == {int}:
        return list(map(int.__repr__, values))
    return list(map(_value, values))


def _lines(columns: Sequence[Sequence[str]]) -> str:
    """COPY text columns (of one length) as COPY lines."""
    if not columns or not columns[0]:
        return ""
    return "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"


def _rows_text(rows: Sequence[Row]) -> str:
    """Row dicts (a spool file's, or rows the writer keeps in memory) as COPY text of
    ``COLUMNS``."""
    columns = zip(*map(itemgetter(*COLUMNS), rows), strict=True)  # one tuple per column
    return _lines([_column(values) for values in columns])


def _entry_text(entry: Entry) -> str:
    """An entry's rows as COPY text of ``COLUMNS``, without a dict per row: the shared values
    are made text once, the other columns each in a few native calls."""
    n = entry.rows
    shared = "\t".join(map(_value, entry._common().values()))
    if entry.listings:
        if not entry.prices_match:
            raise ValueError(f"{len(entry._predictions())} prices for {n} listings")
        inputs = _column(listings_json(entry.listings))
        prices = _column(entry._predictions())
    else:
        inputs, prices = [_escape(json.dumps(entry._body()))], [NULL]
    if n == 1:  # most requests price one listing: its line is cheaper made directly
        return f"{shared}\t0\t{inputs[0]}\t{prices[0]}\n"
    return _lines([[shared] * n, list(map(int.__repr__, range(n))), inputs, prices])


def _write_text(engine: sa.Engine, payload: str) -> None:
    """Insert rows given as COPY text of ``COLUMNS`` in one transaction (already stored ones are
    skipped)."""
    with engine.begin() as conn:
        db.copy_new_rows(
            conn, "inference_requests", COLUMNS, "request_id, row_index", lambda c: c.write(payload)
        )


def write_rows(engine: sa.Engine, rows: Sequence[Row]) -> None:
    """Insert ``rows`` in one transaction; rows already stored are skipped."""
    _write_text(engine, _rows_text(rows))


def write_entries(engine: sa.Engine, entries: Sequence[Entry]) -> None:
    """Insert the rows of ``entries`` in one transaction, as ``write_rows`` would their
    ``to_rows()``, without a dict per row."""
    _write_text(engine, "".join(map(_entry_text, entries)))
