"""Listings the suite makes itself: seeded generated rows, and a CSV of them in the realtor format.

The tests once read a real 5k sample from beside the clone; a clone alone must pass, so every test
uses these instead (the real sample stays optional in ``benchmarks/`` only).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from datasource.generator import generate_listings
from tasador.core import db, raw_store
from tasador.core.columns import RAW_COLUMNS
from tasador.core.config import Settings
from tasador.loop import ingest

SAMPLE_ROWS = 5_000  # as many rows as the real sample had, so the tests' sizes still fit
SAMPLE_SEED = 5_000


def write_realtor_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as the Kaggle realtor CSV has it: its 12 columns in order, missing as ''."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.loc[:, list(RAW_COLUMNS)].to_csv(path, index=False)
    return path


def generated_csv(path: Path, rows: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> Path:
    """``rows`` generated listings (same ``seed``, same file) written to ``path``."""
    return write_realtor_csv(generate_listings(rows, seed=seed), path)


def store_generated(settings: Settings, batch_number: int, n: int, **knobs: object) -> int:
    """Generate listings, store them in RAW as the API would send them, clean them into CLEAN."""
    frame = generate_listings(n, seed=(7, batch_number), **knobs)
    rows = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    stored = raw_store.store_batch(
        db.engine("raw", settings.databases),
        group_number=1,
        day=None,
        batch_number=batch_number,
        rows=rows,
        payload_sha256=f"{batch_number:064d}",
        source="test",
    )
    ingest.clean(settings.databases, stored.id)
    return stored.id
