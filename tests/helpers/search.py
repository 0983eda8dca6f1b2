"""Searches under test: tiny search spaces, and batches stored in RAW and cleaned into CLEAN."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tasador.core import clean_store, db, raw_store
from tasador.core.columns import RAW_COLUMNS
from tasador.core.config import Settings

TINY_SPACES = {
    "xgboost": """\
family: xgboost
params:
  n_estimators: {type: int, low: 10, high: 40}
  max_depth: {type: int, low: 2, high: 5}
  learning_rate: {type: float, low: 0.05, high: 0.3, log: true}
""",
    "lightgbm": """\
family: lightgbm
params:
  n_estimators: {type: int, low: 10, high: 40}
  num_leaves: {type: int, low: 4, high: 16}
""",
    "random_forest": """\
family: random_forest
params:
  n_estimators: {type: int, low: 5, high: 15}
  min_samples_leaf: {type: int, low: 1, high: 10}
""",
    "ridge": """\
family: ridge
params:
  alpha: {type: float, low: 0.01, high: 100, log: true}
features:
  smoothing: {type: float, low: 1, high: 20, log: true}
""",
}


def write_spaces(folder: Path, spaces: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in spaces.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def load_batches(settings: Settings, frame: pd.DataFrame, sizes: Sequence[int]) -> list[int]:
    """Store consecutive slices of a raw-text frame as RAW batches and clean them into CLEAN."""
    raw_engine, clean_engine = (
        db.engine("raw", settings.databases),
        db.engine("clean", settings.databases),
    )
    ids, start = [], 0
    for number, size in enumerate(sizes):
        part = frame.iloc[start : start + size]
        start += size
        rows = [
            tuple(None if v == "" else v for v in row)
            for row in part.loc[:, list(RAW_COLUMNS)].itertuples(index=False)
        ]
        stored = raw_store.store_batch(
            raw_engine,
            group_number=1,
            day=None,
            batch_number=number,
            rows=rows,
            payload_sha256=hashlib.sha256(repr(rows).encode()).hexdigest(),
            source="test",
        )
        clean_store.clean_batch(raw_engine, clean_engine, stored.id)
        ids.append(stored.id)
    return ids


def searched_version(settings: Settings, frame: pd.DataFrame, sizes: Sequence[int]) -> list[int]:
    """Batches of ``frame`` stored and cleaned, one real study over all of them (one worker),
    its best trial refitted, registered and faced with production: version 1 when the registry
    is empty. Returns the batch ids."""
    from experiments import champion, search_worker, study  # only where a test searches

    ids = load_batches(settings, frame, sizes)
    plan = study.prepare_study(settings, ids)
    search_worker.run_worker(plan.study_name, settings)
    champion.finish_study(plan.study_name, settings)
    return ids
