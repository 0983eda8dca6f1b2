"""The CLEAN database: typed, de-duplicated listings with batch lineage, and cleaning reports.

``clean_batch`` turns one RAW batch into CLEAN rows in one transaction and can be re-run safely:
it replaces that batch's rows. A listing already stored by an earlier batch (same content hash)
is not stored twice; the report counts it as ``duplicate_of_earlier_batch``. Cleanings of one
batch take turns (a PostgreSQL advisory lock keyed by the batch id): run at once, the second
would otherwise find every listing "already stored" by the first and record ``rows_out=0``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from tasador.core import binary_copy, db, raw_store
from tasador.core.cleaning import CleaningReport, clean_frame
from tasador.core.columns import RAW_COLUMNS
from tasador.core.errors import NotFound
from tasador.core.holdout import is_holdout, row_hashes
from tasador.core.tables.clean import LISTING_TYPES, cleaned_batches, listings
from tasador.core.timings import step

# Namespace of the advisory locks serializing the cleaning of one batch (second key: its id).
_CLEANING_LOCK = 73_052_182

_LISTING_COLUMNS = ("batch_id", "row_index", "row_hash", "is_holdout", *RAW_COLUMNS)


@dataclass(frozen=True)
class CleanedBatch:
    """A RAW batch cleaned into CLEAN: its id and what cleaning dropped and fixed."""

    batch_id: int
    report: CleaningReport


def clean_batch(raw_engine: sa.Engine, clean_engine: sa.Engine, batch_id: int) -> CleanedBatch:
    """Clean one stored RAW batch into CLEAN (replacing a previous cleaning of it)."""
    with step("clean", batch_id=batch_id) as timed:
        cleaned = _clean_batch(raw_engine, clean_engine, batch_id)
        timed.update(rows=cleaned.report.rows_in, rows_out=cleaned.report.rows_out)
    return cleaned


def listing_rows(raw: pd.DataFrame, batch_id: int) -> tuple[pd.DataFrame, CleaningReport]:
    """One RAW batch's rows (``read_batch_rows``) cleaned into CLEAN's listings: the clean
    columns with their batch, payload position, content hash and holdout side. Rows an earlier
    batch already stored are still here: CLEAN leaves them out when it inserts."""
    frame, report = clean_frame(raw)
    hashes = row_hashes(frame)
    frame = frame.assign(
        batch_id=batch_id,
        row_index=frame.index.to_numpy(),
        row_hash=hashes,
        is_holdout=is_holdout(hashes),
    )
    return frame, report


def _clean_batch(raw_engine: sa.Engine, clean_engine: sa.Engine, batch_id: int) -> CleanedBatch:
    meta = raw_store.get_batch(raw_engine, batch_id)
    if meta is None:
        raise NotFound(f"no RAW batch with id {batch_id}")
    frame, report = listing_rows(raw_store.read_batch_rows(raw_engine, batch_id), batch_id)
    with clean_engine.begin() as conn:
        # Held to commit: a concurrent cleaning of this batch waits, then replaces our rows.
        conn.execute(
            sa.select(
                sa.func.pg_advisory_xact_lock(
                    sa.cast(sa.literal(_CLEANING_LOCK), sa.Integer),
                    sa.cast(sa.literal(batch_id % 2**31), sa.Integer),
                )
            )
        )
        conn.execute(sa.delete(listings).where(listings.c.batch_id == batch_id))
        conn.execute(
            postgresql.insert(cleaned_batches)
            .values(
                id=batch_id,
                group_number=meta.group_number,
                day=meta.day,
                batch_number=meta.batch_number,
                payload_sha256=meta.payload_sha256,
                rows_in=report.rows_in,
                rows_out=0,
                report={},
            )
            .on_conflict_do_nothing(index_elements=["id"])
        )
        inserted = _insert_listings(conn, frame)
        report.drop("duplicate_of_earlier_batch", len(frame) - inserted)
        report.rows_out = inserted
        conn.execute(
            sa.update(cleaned_batches)
            .where(cleaned_batches.c.id == batch_id)
            .values(
                rows_in=report.rows_in,
                rows_out=inserted,
                report=report.as_dict(),
                cleaned_at=sa.func.now(),
            )
        )
    return CleanedBatch(batch_id=batch_id, report=report)


def _pg_type(column: sa.Column[Any]) -> binary_copy.PgType:
    """The binary COPY type of a ``listings`` column."""
    kind = column.type
    if isinstance(kind, sa.BigInteger):
        return "int8"
    if isinstance(kind, sa.Integer):
        return "int4"
    if isinstance(kind, sa.Boolean):
        return "bool"
    if isinstance(kind, sa.Float):
        return "float8"
    if isinstance(kind, sa.Date):
        return "date"
    return "text"


_COPY_TYPES = {c: _pg_type(listings.c[c]) for c in _LISTING_COLUMNS}


def _insert_listings(conn: sa.Connection, frame: pd.DataFrame) -> int:
    """COPY (binary) into a temporary table, then keep the rows whose content is new."""

    def send(copy: Any) -> None:
        for chunk in binary_copy.encode(frame, _COPY_TYPES):
            copy.write(chunk)

    return db.copy_new_rows(conn, "listings", _LISTING_COLUMNS, "row_hash", send, binary=True)


# The columns and types of loaded listings (the date is parsed to datetime64[ns] apart).
_LOADED_COLUMNS = ("batch_id", "row_index", "is_holdout", *RAW_COLUMNS)
_LOADED_TYPES = {
    **{c: "string" for c in RAW_COLUMNS if c not in LISTING_TYPES},
    **{c: "float64" for c in LISTING_TYPES if c != "prev_sold_date"},
    "batch_id": "int64",
    "row_index": "int64",
}


def load_listings(
    engine: sa.Engine, batch_ids: Sequence[int] | None = None, holdout: bool | None = None
) -> pd.DataFrame:
    """Clean listings (columns: ``tasador.core.tables.clean.listings``), optionally of some
    batches or one side of the holdout, ordered by (batch_id, row_index)."""
    where = []
    if batch_ids is not None:
        ids = ",".join(str(int(b)) for b in batch_ids) or "NULL"
        where.append(f"batch_id IN ({ids})")
    if holdout is not None:
        where.append("is_holdout" if holdout else "NOT is_holdout")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    columns = ", ".join(_LOADED_COLUMNS)
    query = f"SELECT {columns} FROM listings {clause} ORDER BY batch_id, row_index"
    buffer = db.copy_out_csv(engine, query)
    frame = pd.read_csv(
        buffer,
        dtype=_LOADED_TYPES,
        parse_dates=["prev_sold_date"],
        keep_default_na=False,
        na_values=[""],
    )
    frame["is_holdout"] = frame["is_holdout"].map({"t": True, "f": False}).astype(bool)
    frame["prev_sold_date"] = frame["prev_sold_date"].astype("datetime64[ns]")
    return frame


def cleaning_reports(engine: sa.Engine) -> dict[int, sa.Row[Any]]:
    """The cleaning record of every cleaned batch, by batch id."""
    with engine.connect() as conn:
        return {
            row.id: row
            for row in conn.execute(sa.select(cleaned_batches).order_by(cleaned_batches.c.id))
        }


def holdout_share(frame: pd.DataFrame) -> float:
    """Share of the frame's rows in the holdout (0.0 for an empty frame)."""
    return float(np.mean(frame["is_holdout"])) if len(frame) else 0.0


@dataclass(frozen=True)
class Rebuilt:
    """Listings made again from RAW, as :func:`load_listings` would give them had CLEAN stored
    them then, and the :func:`raw_store.rows_sha256` of every RAW batch read for them."""

    listings: pd.DataFrame
    rows_sha256: dict[int, str]


def rebuild_listings(
    raw_engine: sa.Engine, keep: Collection[int], cleaned_before: Collection[int] = ()
) -> Rebuilt:
    """The listings of batches ``keep``, cleaned again from RAW without writing anything.

    CLEAN stores a listing once: the batch that brings it first. So every batch of
    ``cleaned_before`` (those cleaned before ``keep``'s own) and of ``keep`` is cleaned here in
    the loop's order (by id, the order they were received), and a listing an earlier one held is
    left out of a later one, as CLEAN's insert left it out."""
    seen: set[int] = set()
    parts = []
    digests = {}
    for batch_id in sorted(set(keep) | set(cleaned_before)):
        raw, digests[batch_id] = raw_store.read_batch_rows_hashed(raw_engine, batch_id)
        frame, _ = listing_rows(raw, batch_id)
        new = ~frame["row_hash"].isin(seen)
        seen.update(frame["row_hash"].tolist())
        if batch_id in keep:
            parts.append(frame.loc[new])
    listings = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return Rebuilt(_as_loaded(listings), digests)


def _as_loaded(frame: pd.DataFrame) -> pd.DataFrame:
    """Clean rows with the columns, types, order and index :func:`load_listings` gives."""
    out = frame.reindex(columns=list(_LOADED_COLUMNS)).astype(_LOADED_TYPES)
    out["is_holdout"] = out["is_holdout"].astype(bool)
    out["prev_sold_date"] = out["prev_sold_date"].astype("datetime64[ns]")
    return out.sort_values(["batch_id", "row_index"], ignore_index=True)
