"""The RAW database: every batch exactly as received, and every inference request.

Row values are kept as the text they arrived as (numbers as their JSON text, strings verbatim,
missing as NULL); typing happens in CLEAN. A batch is keyed by (group, day, batch number, sha256 of
the payload), so storing the same batch again adds nothing. Rows are bulk-loaded with COPY inside
the same transaction as their batch row.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.dialects import postgresql

from tasador.core.columns import RAW_COLUMNS

metadata = sa.MetaData()

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("group_number", sa.Integer, nullable=False),
    sa.Column("day", sa.Text, nullable=False, server_default=""),  # "" when the API has no day
    sa.Column("batch_number", sa.Integer, nullable=False),
    sa.Column(
        "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("payload_sha256", sa.CHAR(64), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.UniqueConstraint("group_number", "day", "batch_number", "payload_sha256", name="batch_key"),
)

batch_rows = sa.Table(
    "batch_rows",
    metadata,
    # No foreign key to batches: PostgreSQL checks one with a trigger per row, which made COPY
    # of a 200k-row batch 1.6x slower. Rows and their batch are written in one transaction by
    # store_batch alone, and nothing deletes batches, so no row can lose its batch.
    sa.Column("batch_id", sa.BigInteger, primary_key=True),
    sa.Column("row_index", sa.Integer, primary_key=True),
    *(sa.Column(c, sa.Text) for c in RAW_COLUMNS),
)

inference_requests = sa.Table(
    "inference_requests",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("model_name", sa.Text),
    sa.Column("model_version", sa.Text),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("prediction", sa.Float),
    sa.Column("latency_ms", sa.Float),
    sa.Column("status_code", sa.Integer, nullable=False),
    # One row per listing of a request; the key makes re-sending a logged batch harmless.
    sa.Column("request_id", sa.Uuid),
    sa.Column("row_index", sa.Integer),
    sa.UniqueConstraint("request_id", "row_index", name="inference_row_key"),
)


@dataclass(frozen=True)
class StoredBatch:
    """A batch stored in RAW: its id, whether this call created it, and its row count."""

    id: int
    created: bool  # False when the very same batch was stored before
    row_count: int


def store_batch(
    engine: sa.Engine,
    *,
    group_number: int,
    day: str | None,
    batch_number: int,
    rows: Sequence[Sequence[object]],
    payload_sha256: str,
    source: str,
) -> StoredBatch:
    """Store one batch (rows in RAW_COLUMNS order) in one transaction; idempotent.

    Values must be JSON scalars (str, int, float, bool or None); COPY writes each as its text.
    """
    key = {
        "group_number": group_number,
        "day": day or "",
        "batch_number": batch_number,
        "payload_sha256": payload_sha256,
    }
    with engine.begin() as conn:
        insert = (
            postgresql.insert(batches)
            .values(**key, row_count=len(rows), source=source)
            .on_conflict_do_nothing(constraint="batch_key")
            .returning(batches.c.id)
        )
        new_id = conn.execute(insert).scalar()
        if new_id is None:
            existing = conn.execute(
                sa.select(batches.c.id, batches.c.row_count).filter_by(**key)
            ).one()
            return StoredBatch(id=existing.id, created=False, row_count=existing.row_count)
        _copy_rows(conn, new_id, rows)
    return StoredBatch(id=new_id, created=True, row_count=len(rows))


def _copy_rows(conn: sa.Connection, batch_id: int, rows: Sequence[Sequence[object]]) -> None:
    driver = conn.connection.driver_connection
    assert driver is not None  # an open connection always has its psycopg connection
    cursor = driver.cursor()
    columns = ", ".join(("batch_id", "row_index", *RAW_COLUMNS))
    # The queued writer sends from a thread of its own, so the server parses and indexes one
    # chunk while Python formats the next: about 1.5x faster than the default writer here.
    writer = QueuedLibpqWriter(cursor)
    with cursor.copy(f"COPY batch_rows ({columns}) FROM STDIN", writer=writer) as copy:
        for index, row in enumerate(rows):
            copy.write_row((batch_id, index, *row))


def read_batch_rows(engine: sa.Engine, batch_id: int) -> pd.DataFrame:
    """The rows of one batch as text (missing as NA), indexed by their position in the payload."""
    columns = ", ".join(("row_index", *RAW_COLUMNS))
    query = f"SELECT {columns} FROM batch_rows WHERE batch_id = {int(batch_id)} ORDER BY row_index"
    buffer = io.BytesIO()
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None  # an open connection always has its psycopg connection
        cursor = driver.cursor()
        with cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            for chunk in copy:
                buffer.write(chunk)
    buffer.seek(0)
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
