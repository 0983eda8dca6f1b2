"""Batches in the RAW database: every batch exactly as received (tables: tasador.core.tables.raw).

Row values are kept as the text they arrived as (numbers as their JSON text, strings verbatim,
missing as NULL); typing happens in CLEAN. A batch is keyed by (group, day, batch number, sha256 of
the payload), so storing the same batch again adds nothing. Rows are bulk-loaded with COPY inside
the same transaction as their batch row.

Nothing received is dropped: rows that cannot be stored as columns (wrong shape, a NUL character
PostgreSQL text refuses) go to ``rejected_rows`` with their reason and JSON text, in the same
transaction, and are counted in ``batches.rejected_count``. Storing a batch whose number jumps
past the last stored one + 1 of its group and day records the skipped numbers in ``batch_gaps``;
storing a skipped number later (``tasador recover``) marks its gap filled.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.dialects import postgresql

from tasador.core import db
from tasador.core.columns import RAW_COLUMNS
from tasador.core.tables.raw import batch_gaps, batches, rejected_rows

# Namespace of the advisory locks that order batch stores of one group and day (gap detection
# reads the last stored number, so two stores of one sequence must not interleave).
_SEQUENCE_LOCK = 73_052_181


@dataclass(frozen=True)
class StoredBatch:
    """A batch stored in RAW: its id, whether this call created it, and its row count."""

    id: int
    created: bool  # False when the very same batch was stored before
    row_count: int
    rejected_count: int = 0
    gaps: tuple[int, ...] = ()  # batch numbers this store revealed as skipped


@dataclass(frozen=True)
class RejectedRow:
    """A received row that cannot be stored as columns: its payload position, why, its JSON."""

    row_index: int
    reason: str
    content: str


def store_batch(
    engine: sa.Engine,
    *,
    group_number: int,
    day: str | None,
    batch_number: int,
    rows: Sequence[Sequence[object]],
    payload_sha256: str,
    source: str,
    row_indexes: Sequence[int] | None = None,
    rejected: Sequence[RejectedRow] = (),
) -> StoredBatch:
    """Store one batch (rows in RAW_COLUMNS order) in one transaction; idempotent.

    Values must be JSON scalars (str, int, float, bool or None) without NUL characters; COPY
    writes each as its text. ``row_indexes`` are the rows' positions in the payload (default
    0, 1, ...); ``rejected`` are the payload's rows that could not be stored as columns.
    Records the batch numbers skipped before this one as gaps, and fills this one's gap.
    """
    if row_indexes is not None and len(row_indexes) != len(rows):
        raise ValueError("row_indexes and rows differ in length")
    key = {
        "group_number": group_number,
        "day": day or "",
        "batch_number": batch_number,
        "payload_sha256": payload_sha256,
    }
    with engine.begin() as conn:
        conn.execute(
            sa.select(
                sa.func.pg_advisory_xact_lock(
                    sa.cast(sa.literal(_SEQUENCE_LOCK), sa.Integer),
                    sa.func.hashtext(f"{group_number}/{day or ''}"),
                )
            )
        )
        insert = (
            postgresql.insert(batches)
            .values(**key, row_count=len(rows), rejected_count=len(rejected), source=source)
            .on_conflict_do_nothing(constraint="batch_key")
            .returning(batches.c.id)
        )
        new_id = conn.execute(insert).scalar()
        if new_id is None:
            existing = conn.execute(
                sa.select(batches.c.id, batches.c.row_count, batches.c.rejected_count).filter_by(
                    **key
                )
            ).one()
            return StoredBatch(
                id=existing.id,
                created=False,
                row_count=existing.row_count,
                rejected_count=existing.rejected_count,
            )
        _copy_rows(conn, new_id, rows, row_indexes or range(len(rows)))
        if rejected:
            _copy_rejected(conn, new_id, rejected)
        gaps = _record_gaps(conn, new_id, group_number, day or "", batch_number)
    return StoredBatch(
        id=new_id, created=True, row_count=len(rows), rejected_count=len(rejected), gaps=gaps
    )


def _record_gaps(
    conn: sa.Connection, batch_id: int, group_number: int, day: str, batch_number: int
) -> tuple[int, ...]:
    """Fill this number's gap; record the numbers between the last stored one and this one."""
    conn.execute(
        sa.update(batch_gaps)
        .where(
            batch_gaps.c.group_number == group_number,
            batch_gaps.c.day == day,
            batch_gaps.c.batch_number == batch_number,
            batch_gaps.c.filled_at.is_(None),
        )
        .values(filled_at=sa.func.now(), filled_by_batch_id=batch_id)
    )
    last = conn.execute(
        sa.select(sa.func.max(batches.c.batch_number)).where(
            batches.c.group_number == group_number,
            batches.c.day == day,
            batches.c.id != batch_id,
        )
    ).scalar()
    # A first batch numbered above 0 means the earlier ones were served to nobody we know of.
    first_missing = -1 if last is None else int(last)
    missing = tuple(range(first_missing + 1, batch_number))
    if missing:
        conn.execute(
            postgresql.insert(batch_gaps)
            .values(
                [
                    {
                        "group_number": group_number,
                        "day": day,
                        "batch_number": n,
                        "detected_by_batch_id": batch_id,
                    }
                    for n in missing
                ]
            )
            .on_conflict_do_nothing()
        )
    return missing


def _copy_rows(
    conn: sa.Connection,
    batch_id: int,
    rows: Sequence[Sequence[object]],
    row_indexes: Sequence[int],
) -> None:
    driver = conn.connection.driver_connection
    assert driver is not None  # an open connection always has its psycopg connection
    cursor = driver.cursor()
    columns = ", ".join(("batch_id", "row_index", *RAW_COLUMNS))
    # The queued writer sends from a thread of its own, so the server parses and indexes one
    # chunk while Python formats the next: about 1.5x faster than the default writer here.
    writer = QueuedLibpqWriter(cursor)
    with cursor.copy(f"COPY batch_rows ({columns}) FROM STDIN", writer=writer) as copy:
        for index, row in zip(row_indexes, rows, strict=True):
            copy.write_row((batch_id, index, *row))


def _copy_rejected(conn: sa.Connection, batch_id: int, rejected: Sequence[RejectedRow]) -> None:
    driver = conn.connection.driver_connection
    assert driver is not None  # an open connection always has its psycopg connection
    cursor = driver.cursor()
    with cursor.copy(
        "COPY rejected_rows (batch_id, row_index, reason, content) FROM STDIN"
    ) as copy:
        for row in rejected:
            copy.write_row((batch_id, row.row_index, row.reason, row.content))


def read_rejected_rows(engine: sa.Engine, batch_id: int) -> list[sa.Row[Any]]:
    """The rejected rows of one batch, by payload position."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(rejected_rows)
                .where(rejected_rows.c.batch_id == batch_id)
                .order_by(rejected_rows.c.row_index)
            )
        )


def open_gaps(
    engine: sa.Engine, group_number: int | None = None, day: str | None = None
) -> list[sa.Row[Any]]:
    """Skipped batch numbers not filled yet (of one group and day, or all), in order."""
    query = sa.select(batch_gaps).where(batch_gaps.c.filled_at.is_(None))
    if group_number is not None:
        query = query.where(
            batch_gaps.c.group_number == group_number, batch_gaps.c.day == (day or "")
        )
    order = (batch_gaps.c.group_number, batch_gaps.c.day, batch_gaps.c.batch_number)
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(*order)))


def last_batch_number(engine: sa.Engine, group_number: int, day: str | None) -> int | None:
    """The highest batch number stored for a group and day (None: none stored)."""
    with engine.connect() as conn:
        value = conn.execute(
            sa.select(sa.func.max(batches.c.batch_number)).where(
                batches.c.group_number == group_number, batches.c.day == (day or "")
            )
        ).scalar()
    return None if value is None else int(value)


def _batch_rows_csv(engine: sa.Engine, batch_id: int) -> io.BytesIO:
    """The rows of one batch as PostgreSQL's CSV (a NULL is an empty field, an empty text ``""``),
    by their position in the payload."""
    columns = ", ".join(("row_index", *RAW_COLUMNS))
    query = f"SELECT {columns} FROM batch_rows WHERE batch_id = {int(batch_id)} ORDER BY row_index"
    return db.copy_out_csv(engine, query)


def rows_sha256(engine: sa.Engine, batch_id: int) -> str:
    """sha256 of one batch's stored rows (positions and text, NULL told from empty text).

    The received body is not kept once RAW has it, so its ``payload_sha256`` cannot be checked
    again; this hash of what RAW holds can: recorded when a study starts, it shows later whether
    the rows a model learned from were changed since."""
    return hashlib.sha256(_batch_rows_csv(engine, batch_id).getbuffer()).hexdigest()


def read_batch_rows_hashed(engine: sa.Engine, batch_id: int) -> tuple[pd.DataFrame, str]:
    """:func:`read_batch_rows` and :func:`rows_sha256` of the same read."""
    buffer = _batch_rows_csv(engine, batch_id)
    digest = hashlib.sha256(buffer.getbuffer()).hexdigest()
    return _rows_frame(buffer), digest


def read_batch_rows(engine: sa.Engine, batch_id: int) -> pd.DataFrame:
    """The rows of one batch as text (missing as NA), indexed by their position in the payload."""
    return _rows_frame(_batch_rows_csv(engine, batch_id))


def _rows_frame(buffer: io.BytesIO) -> pd.DataFrame:
    frame = pd.read_csv(
        buffer,
        dtype={"row_index": "int64", **dict.fromkeys(RAW_COLUMNS, object)},
        keep_default_na=False,
        na_values=[""],
    )
    return frame.set_index("row_index")


def get_batch(engine: sa.Engine, batch_id: int) -> sa.Row[Any] | None:
    """The batch row with this id, or None."""
    with engine.connect() as conn:
        return conn.execute(sa.select(batches).where(batches.c.id == batch_id)).one_or_none()


def list_batches(engine: sa.Engine) -> list[sa.Row[Any]]:
    """All batch rows, oldest first."""
    with engine.connect() as conn:
        return list(conn.execute(sa.select(batches).order_by(batches.c.id)))
