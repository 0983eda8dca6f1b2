"""A batch body read incrementally: its header, its rows as columns, and the rows set aside.

A batch of the course's size is a ~100 MB JSON document. :func:`read_payload` never holds it as
one string or one tree of objects: it reads the body in chunks and keeps only the rows' values,
while hashing the bytes exactly as received. The complete rows of each chunk are decoded in one
call of msgspec's decoder; a stretch msgspec refuses (``NaN``, a lone surrogate), and the row
across each chunk's end, are read row by row by the standard library's C scanner
(``json.JSONDecoder.raw_decode``), which also words the errors. Whitespace, indentation and the
order of keys change neither path. The shape it reads is the course API's,
``{"group_number": N, "batch_number": K, "day": ..., "data": [row, ...]}`` (keys in any order,
other keys ignored); rows are objects keyed by column or lists in column order.

A row that cannot be stored as columns (wrong columns or width, a non-scalar value, a NUL
character, text that is not valid UTF-8) is set aside with its reason and its JSON text; a body
that is not such a document at all raises :class:`PayloadError`.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import IO, Any

import msgspec

from tasador.core.columns import RAW_COLUMNS
from tasador.core.errors import BadInput, ServiceUnavailable
from tasador.core.raw_store import RejectedRow

CHUNK_BYTES = 1 << 20
# A single value (a row, a header field) longer than this is not a listing: the body is refused
# rather than read whole into memory in search of the value's end.
MAX_VALUE_CHARS = 16 << 20
PROGRESS_EVERY_ROWS = 50_000

# Rows looked back over for the last row boundary of a chunk: past that many commas from its
# end the chunk is read row by row (rows of scalars, which are set aside anyway).
MAX_COMMAS_BACK = 1000

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_AFTER_ROW = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")  # the separator after a row
# What text can hold that a column cannot: a NUL or a lone surrogate, which JSON writes only as
# an escape (a raw NUL in a string is not JSON). Other escapes (\u00e9) decode to storable text.
# (One literal start keeps the search over a whole chunk fast.)
_UNSTORABLE = r"\\u(?:0000|[dD][89a-fA-F])"
_NOT_FLAT = re.compile(r"[\[{]|" + _UNSTORABLE)  # nesting, or an escape that may be unstorable
_UNSTORABLE_TEXT = re.compile(_UNSTORABLE)
_decode = json.JSONDecoder().raw_decode
_decode_list = msgspec.json.Decoder().decode  # untyped: dicts, lists and scalars, like json
# Rows with exactly the columns, as objects (keys in any order) or as lists in column order,
# each value a scalar, decode straight into a struct per row: its fields are the columns.
_fields = [(column, str | int | float | bool | None) for column in RAW_COLUMNS]
_ObjectRow = msgspec.defstruct("_ObjectRow", _fields, forbid_unknown_fields=True, gc=False)
_ListRow = msgspec.defstruct(
    "_ListRow", _fields, array_like=True, forbid_unknown_fields=True, gc=False
)
_decode_rows = {
    "{": msgspec.json.Decoder(list[_ObjectRow]).decode,  # type: ignore[valid-type]
    "[": msgspec.json.Decoder(list[_ListRow]).decode,  # type: ignore[valid-type]
}
_as_tuple = msgspec.structs.astuple
_EXPECTED_KEYS = frozenset(RAW_COLUMNS)
_in_column_order = itemgetter(*RAW_COLUMNS)


class CollectError(ServiceUnavailable):
    """The data API could not be read (after retries) or answered something unexpected."""


class PayloadError(CollectError, BadInput):
    """The data API answered, but not with a valid batch."""


@dataclass(frozen=True)
class SplitRows:
    """A payload's rows: those storable as columns (with their positions) and the rejected."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)


@dataclass(frozen=True)
class Payload:
    """A batch body, read: what it says it is, its rows, and the sha256 of its bytes."""

    group_number: int
    batch_number: int
    day: str | None
    split: SplitRows
    sha256: str

    @property
    def received(self) -> int:
        """Rows the body held, stored as columns or set aside."""
        return len(self.split.rows) + len(self.split.rejected)


def row_problem(row: Any, index: int) -> tuple[tuple[Any, ...] | None, str | None]:
    """The row as a tuple in RAW_COLUMNS order, or why it cannot be stored as columns."""
    if isinstance(row, dict):
        if row.keys() != _EXPECTED_KEYS:
            missing = sorted(_EXPECTED_KEYS - row.keys())
            unknown = sorted(row.keys() - _EXPECTED_KEYS)
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


def add_row(split: SplitRows, row: Any, index: int) -> None:
    """Add one decoded row to ``split``: as values in column order, or rejected with its reason."""
    values, problem = row_problem(row, index)
    if values is not None:
        split.rows.append(values)
        split.indexes.append(index)
    else:
        assert problem is not None  # row_problem gives one or the other
        content = json.dumps(row, ensure_ascii=True)  # escapes NUL: storable text
        split.rejected.append(RejectedRow(index, problem, content))


class _Chunks:
    """The body as text, a chunk at a time; ``buf[pos:]`` is what is not consumed yet."""

    def __init__(self, stream: IO[bytes], chunk_bytes: int) -> None:
        self.stream = stream
        self.chunk_bytes = chunk_bytes
        self.hash = hashlib.sha256()
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0
        self.consumed = 0  # characters dropped from the front of buf so far
        self.eof = False
        self.reads = 0  # chunks read so far: tells one buffer from the next

    def more(self) -> None:
        """Append the next chunk to the buffer, dropping what was consumed."""
        data = self.stream.read(self.chunk_bytes)
        self.hash.update(data)
        try:
            text = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise _invalid(f"body: not UTF-8 text ({exc.reason})") from None
        self.eof = not data
        self.reads += 1
        self.drop()
        self.buf += text

    def drop(self) -> None:
        """Forget the text consumed so far: what is copied or scanned later (a JSON error counts
        the lines before it) is only what is left."""
        self.consumed += self.pos
        self.buf = self.buf[self.pos :]
        self.pos = 0

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end of the body)."""
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if self.eof:
                return ""
            self.more()

    def expect(self, chars: str, what: str) -> str:
        found = self.peek()
        if not found or found not in chars:
            where = f"character {self.consumed + self.pos}"
            raise _invalid(f"body: expected {what} at {where}, found {found or 'the end'!r}")
        self.pos += 1
        return found

    def value(self) -> tuple[Any, int]:
        """Decode the JSON value at the current position; return it and where it started."""
        self.peek()
        while True:
            start = self.pos
            try:
                value, end = _decode(self.buf, start)
            except json.JSONDecodeError as exc:
                if self.eof or len(self.buf) - start > MAX_VALUE_CHARS:
                    offset = self.consumed + exc.pos
                    raise _invalid(f"body: not JSON at character {offset} ({exc.msg})") from None
                self.more()  # the value may go on in the next chunk
                continue
            if end == len(self.buf) and not self.eof:
                self.more()  # a number cut at the chunk's end would decode short
                continue
            self.pos = end
            return value, start

    def flat(self, start: int) -> bool:
        """Whether the value from ``start`` to the position has no nesting and no escape of a
        NUL or a surrogate: then it holds only scalars, none of them unstorable text."""
        return _NOT_FLAT.search(self.buf, start + 1, self.pos) is None


def _invalid(problem: str) -> PayloadError:
    return PayloadError(f"the data API sent an invalid batch ({problem})")


def _add(split: SplitRows, row: Any, index: int, flat: bool) -> None:
    """Keep one decoded row; a flat row with the right shape takes the fast path."""
    kind = type(row)
    if flat and kind is dict and row.keys() == _EXPECTED_KEYS:
        split.rows.append(_in_column_order(row))
        split.indexes.append(index)
    elif flat and kind is list and len(row) == len(RAW_COLUMNS):
        split.rows.append(tuple(row))
        split.indexes.append(index)
    else:
        add_row(split, row, index)


def _last_row_end(buf: str, start: int) -> tuple[int, int] | None:
    """Where the last row followed by a comma ends in ``buf[start:]``, and where that comma is:
    the last closing bracket of the first row's kind (``}`` for objects) before a comma,
    whitespace between. Such a place can be inside a string or a nested value (or, for rows as
    lists, end the data array); msgspec then refuses the stretch, as it cannot close as a list."""
    closer = {"{": "}", "[": "]"}.get(buf[start : start + 1])
    if closer is None:
        return None  # rows that are not objects or lists: set aside, one by one
    comma = len(buf)
    for _ in range(MAX_COMMAS_BACK):
        comma = buf.rfind(",", start, comma)
        if comma < 0:
            return None
        end = comma
        while end > start and buf[end - 1] in " \t\n\r":
            end -= 1
        if end > start and buf[end - 1] == closer:
            return end, comma
    return None


def _take_rows(chunks: _Chunks, split: SplitRows, index: int) -> int | None:
    """Decode the buffer's complete rows from the position with msgspec and keep them; leave
    the position at the row after them. The number of rows kept, or None when msgspec refuses
    the stretch (nothing kept: the caller reads it row by row)."""
    buf, start = chunks.buf, chunks.pos
    found = _last_row_end(buf, start)
    if found is None:
        return 0
    end, comma = found
    stretch = "[" + buf[start:end] + "]"
    rows: list[Any] | None = None
    escape = buf.find("\\u", start, end)  # a plain find first: most bodies have no escapes
    if escape < 0 or _UNSTORABLE_TEXT.search(buf, escape, end) is None:  # no NUL, no surrogate
        try:
            rows = _decode_rows[buf[start]](stretch)
        except msgspec.ValidationError:  # a row of another shape: the general way, below
            pass
        except msgspec.DecodeError:  # not JSON as msgspec reads it (NaN, a cut in a string)
            return None
    if rows is not None:
        split.rows.extend(map(_as_tuple, rows))
        split.indexes.extend(range(index, index + len(rows)))
    else:
        try:  # the general way: each row checked on its own
            rows = _decode_list(stretch)
        except msgspec.DecodeError:
            return None
        for offset, row in enumerate(rows):
            add_row(split, row, index + offset)
    chunks.pos = _WHITESPACE.match(buf, comma + 1).end()  # type: ignore[union-attr]
    chunks.drop()  # what is left is at most a row
    return len(rows)


def _read_rows(chunks: _Chunks, progress: Callable[[int], None] | None) -> SplitRows:
    """The ``data`` array, row by row.

    The complete rows of each buffer are decoded at once (:func:`_take_rows`); the rest, or the
    whole buffer when msgspec refuses it, in a tight loop (one decode and two regular
    expressions per row); a row across the buffer's end, or anything unusual, goes through the
    careful path of ``_Chunks``, which reads on and reports errors."""
    if chunks.peek() != "[":
        raise _invalid("data: Input should be a valid list")
    chunks.pos += 1
    split = SplitRows()
    if chunks.peek() == "]":
        chunks.pos += 1
        return split
    index, done, refused = 0, False, -1
    while not done:  # at the start of a row
        if chunks.reads != refused:  # msgspec is tried once per buffer
            taken = _take_rows(chunks, split, index)
            if taken is None:
                refused = chunks.reads
            else:
                passed = (index + taken) // PROGRESS_EVERY_ROWS > index // PROGRESS_EVERY_ROWS
                index += taken
                if progress is not None and passed:
                    progress(index)
        buf, pos = chunks.buf, chunks.pos
        while True:  # the tight loop
            try:
                row, end = _decode(buf, pos)
            except json.JSONDecodeError:
                break
            after = _AFTER_ROW.match(buf, end)
            if after is None:
                break  # the row may go on (a number) or its separator is in the next chunk
            _add(split, row, index, _NOT_FLAT.search(buf, pos + 1, end) is None)
            index += 1
            pos = after.end()
            if progress is not None and index % PROGRESS_EVERY_ROWS == 0:
                progress(index)
            if after.group(1) == "]":
                done = True
                break
        chunks.pos = pos
        if done:
            break
        row, start = chunks.value()  # the careful path, for one row
        _add(split, row, index, chunks.flat(start))
        index += 1
        done = chunks.expect(",]", "',' or ']' after a row") == "]"
        if not done:
            chunks.peek()  # to the next row: the tight loop decodes from where a value starts
    if progress is not None:
        progress(index)
    return split


def _header_int(header: dict[str, Any], name: str) -> int:
    value = header.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        found = "missing" if name not in header else f"{value!r} is not an integer"
        raise _invalid(f"{name}: {found}")
    return int(value)


def read_payload(
    stream: IO[bytes],
    group_number: int,
    *,
    progress: Callable[[int], None] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Payload:
    """Read a batch body from ``stream`` to its end; raises PayloadError if it is not a batch
    for ``group_number``. ``progress`` is called with the rows read so far, now and then."""
    chunks = _Chunks(stream, chunk_bytes)
    chunks.expect("{", "a JSON object")
    header: dict[str, Any] = {}
    split: SplitRows | None = None
    if chunks.peek() == "}":
        chunks.pos += 1
    else:
        while True:
            key, _ = chunks.value()
            if not isinstance(key, str):
                raise _invalid("body: object keys must be strings")
            chunks.expect(":", "':'")
            if key == "data":
                if split is not None:
                    raise _invalid("data: appears twice")
                split = _read_rows(chunks, progress)
            else:
                header[key], _ = chunks.value()
            if chunks.expect(",}", "',' or '}'") == "}":
                break
    if chunks.peek():
        raise _invalid(f"body: more after the batch at character {chunks.consumed + chunks.pos}")
    if split is None:
        raise _invalid("data: Field required")
    day = header.get("day")
    if day is not None and not isinstance(day, str):
        raise _invalid(f"day: {day!r} is not text")
    payload = Payload(
        group_number=_header_int(header, "group_number"),
        batch_number=_header_int(header, "batch_number"),
        day=day,
        split=split,
        sha256=chunks.hash.hexdigest(),
    )
    if payload.group_number != group_number:
        raise PayloadError(
            f"asked for group {group_number} but the data API answered for group "
            f"{payload.group_number}"
        )
    return payload


def parse_payload(body: bytes, group_number: int) -> Payload:
    """A batch body held in memory, read like a received one (see :func:`read_payload`)."""
    return read_payload(io.BytesIO(body), group_number)
