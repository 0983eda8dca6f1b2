"""The rows a retraining learns from and is judged on, read from the CLEAN database.

Training rows are the non-holdout rows of the study's batches; the holdout rows of the same
batches (``tasador.core.holdout``: a content hash puts ~20% of every batch there, recorded in CLEAN)
score the challenger and the production model alike. Rows come ordered by (batch_id, row_index),
so every worker process sees the very same frame; ``data_hash`` proves it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import cast

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tasador.core import clean_store, db, tables
from tasador.core.columns import RAW_COLUMNS, TARGET
from tasador.core.config import DatabaseSettings, Settings
from tasador.core.errors import BadInput, NotFound
from tasador.core.sampling import at_most


def clean_batch_ids(databases: DatabaseSettings) -> list[int]:
    """Every batch id with rows in CLEAN, ascending."""
    engine = db.engine("clean", databases)
    with engine.connect() as conn:
        ids = conn.execute(
            sa.select(tables.clean.listings.c.batch_id).distinct().order_by("batch_id")
        )
        return [int(i) for i in ids.scalars()]


def trainable_batch_ids(
    databases: DatabaseSettings, min_rows: int, up_to: int | None = None
) -> list[int]:
    """Batch ids (ascending, at most ``up_to``) a retraining can use: at least ``min_rows`` clean
    rows, with both training and holdout rows (every batch of a study must have both)."""
    rows = tables.clean.listings
    query = (
        sa.select(rows.c.batch_id)
        .group_by(rows.c.batch_id)
        .having(
            sa.func.count() >= min_rows,
            sa.func.bool_or(rows.c.is_holdout),
            sa.func.bool_or(sa.not_(rows.c.is_holdout)),
        )
        .order_by(rows.c.batch_id)
    )
    if up_to is not None:
        query = query.where(rows.c.batch_id <= up_to)
    with db.engine("clean", databases).connect() as conn:
        return [int(i) for i in conn.execute(query).scalars()]


def _rows(databases: DatabaseSettings, batch_ids: Sequence[int], holdout: bool) -> pd.DataFrame:
    if not batch_ids:
        raise BadInput("no batch ids given")
    frame = clean_store.load_listings(db.engine("clean", databases), list(batch_ids), holdout)
    side = "holdout" if holdout else "training"
    if frame.empty:
        raise NotFound(f"no {side} rows in CLEAN for batches {sorted(batch_ids)}")
    missing = sorted(set(batch_ids) - set(frame["batch_id"].unique()))
    if missing:
        raise NotFound(f"batches {missing} have no {side} rows in CLEAN")
    return frame


def training_rows(settings: Settings, batch_ids: Sequence[int]) -> pd.DataFrame:
    """The clean non-holdout rows of the batches; raises NotFound if a batch has none."""
    return _rows(settings.databases, batch_ids, holdout=False)


def holdout_rows(settings: Settings, batch_ids: Sequence[int]) -> pd.DataFrame:
    """The clean holdout rows of the batches; raises NotFound if a batch has none."""
    return _rows(settings.databases, batch_ids, holdout=True)


def data_hash(frame: pd.DataFrame) -> str:
    """sha256 over the rows' identity and content, in order: equal hashes, equal data."""
    columns = ["batch_id", "row_index", *RAW_COLUMNS]
    hashed = pd.util.hash_pandas_object(frame.loc[:, columns], index=False)
    return hashlib.sha256(hashed.to_numpy(dtype=np.uint64).tobytes()).hexdigest()


def sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows, drawn reproducibly, in their order (the search may use a
    subset, the refit of the best trial at most ``refit_sample_rows``)."""
    return at_most(frame, max_rows, seed, keep_order=True)


def target(frame: pd.DataFrame) -> np.ndarray:
    """The price column as a float64 array."""
    return cast(np.ndarray, frame[TARGET].to_numpy(dtype="float64"))
