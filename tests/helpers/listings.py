"""Listings the suite makes itself: seeded generated rows, and a CSV of them in the realtor format.

The tests once read a real 5k sample from beside the clone; a clone alone must pass, so every test
uses these instead (the real sample stays optional in ``benchmarks/`` only).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from datasource.generator import generate_listings
from tasador.core.columns import RAW_COLUMNS

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
