"""Serve a user's copy of the Kaggle realtor CSV, split into a scenario's batches.

One pass over the file in chunks routes each row to a batch whose filters it meets (status,
states, price band, complete rows); a row that meets several (e.g. the course's batches 0 and 1)
goes to one of them at random, weighted by their planned sizes, with a fixed seed. Rows are
appended to one spill file per batch under the state folder, so memory stays bounded by the
chunk size whatever the size of the file. The partition is built once per (file, scenario) and
published by an atomic rename. Serving reads a batch's spill file and, below scale 1, keeps a
seeded subsample in file order.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from datasource.scenarios import BatchSpec, Scenario, ScenarioError
from datasource.sources import CACHED_BATCHES, batch_seed, finish, short_hash
from tasador.core.columns import RAW_COLUMNS, STATUSES
from tasador.core.errors import BadInput

CHUNK_ROWS = 100_000
ROUTING_SEED = 7
TEXT_COLUMNS = ("status", "city", "state", "prev_sold_date")
NUMBER_COLUMNS = tuple(c for c in RAW_COLUMNS if c not in TEXT_COLUMNS)
# Knobs that only make sense when rows are generated.
GENERATOR_ONLY = ("state_boost", "noise_sd")


class CsvSource:
    """Batches cut from the realtor CSV per the scenario, scaled down, repriced and dirtied."""

    def __init__(
        self, csv: Path, scenario: Scenario, scale: float, seed: int, state_dir: Path
    ) -> None:
        if scale <= 0:
            raise ValueError("scale must be > 0")
        _check_applicable(scenario)
        self.csv = Path(csv)
        self.scenario = scenario
        self.scale = scale
        self.seed = seed
        self.folder = partition(self.csv, scenario, state_dir)
        self.counts: list[int] = json.loads((self.folder / "counts.json").read_text())
        self.batch = lru_cache(maxsize=CACHED_BATCHES)(self._build)

    @property
    def key(self) -> str:
        return short_hash(f"csv|{self.folder.name}|{self.scale!r}|{self.seed}")

    def batch_sizes(self) -> list[int]:
        return [self._size(count) for count in self.counts]

    def _size(self, available: int) -> int:
        return min(available, max(self.scenario.min_rows, round(available * self.scale)))

    def _build(self, group: int, day: str | None, number: int) -> pd.DataFrame:
        frame = read_rows(self.folder / f"batch_{number}.csv")
        seed = batch_seed(self.seed, group, day, number)
        size = self._size(len(frame))
        if size < len(frame):
            keep = np.random.default_rng([*seed, 0]).choice(len(frame), size, replace=False)
            frame = frame.iloc[np.sort(keep)].reset_index(drop=True)
        return finish(frame, self.scenario.batches[number], seed, reprice=True)


def _check_applicable(scenario: Scenario) -> None:
    for i, spec in enumerate(scenario.batches):
        used = [k for k in GENERATOR_ONLY if k in spec.model_fields_set]
        if used:
            raise ScenarioError(
                f"scenario {scenario.name!r}, batch {i} ({spec.name}): {', '.join(used)} "
                "cannot be applied to rows read from a CSV"
            )


def read_rows(path: Path) -> pd.DataFrame:
    """Rows of a realtor CSV with the Kaggle file's types; unparseable numbers become NaN."""
    return _typed(pd.read_csv(path, dtype=str))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[list(RAW_COLUMNS)].copy()
    for column in NUMBER_COLUMNS:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    return out


def partition(csv: Path, scenario: Scenario, state_dir: Path, chunk_rows: int = CHUNK_ROWS) -> Path:
    """The folder of per-batch spill files for this file and scenario (built if needed)."""
    if not csv.is_file():
        raise FileNotFoundError(f"{csv}: no such CSV file")
    header = pd.read_csv(csv, nrows=0).columns
    missing = [c for c in RAW_COLUMNS if c not in header]
    if missing:
        raise BadInput(f"{csv}: not a realtor CSV, missing columns {missing}")
    stat = csv.stat()
    identity = f"{csv.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{scenario.fingerprint}"
    final = Path(state_dir) / "csv" / short_hash(f"{identity}|{chunk_rows}|{ROUTING_SEED}")
    if (final / "counts.json").exists():
        return final
    building = final.with_name(f"{final.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    counts = [0] * len(scenario.batches)
    weights = np.array([b.rows for b in scenario.batches], dtype=float)
    reader = pd.read_csv(csv, dtype=str, chunksize=chunk_rows, usecols=list(RAW_COLUMNS))
    for i, chunk in enumerate(reader):
        rows = _typed(chunk)
        matches = np.column_stack([_matches(rows, spec) for spec in scenario.batches])
        cumulative = np.cumsum(matches * weights, axis=1)
        total = cumulative[:, -1]
        u = np.random.default_rng([ROUTING_SEED, i]).random(len(rows)) * total
        target = np.where(total > 0, (cumulative <= u[:, None]).sum(axis=1), -1)
        for number in range(len(scenario.batches)):
            picked = rows[target == number]
            if len(picked):
                path = building / f"batch_{number}.csv"
                picked.to_csv(path, mode="a", header=not path.exists(), index=False)
                counts[number] += len(picked)
    for number in range(len(scenario.batches)):
        path = building / f"batch_{number}.csv"
        if not path.exists():
            pd.DataFrame(columns=list(RAW_COLUMNS)).to_csv(path, index=False)
    (building / "counts.json").write_text(json.dumps(counts))
    try:
        building.rename(final)
    except OSError:  # another process published the same partition first
        shutil.rmtree(building, ignore_errors=True)
    return final


def _matches(rows: pd.DataFrame, spec: BatchSpec) -> np.ndarray:
    ok = np.ones(len(rows), dtype=bool)
    if spec.complete:
        ok &= rows.notna().all(axis=1).to_numpy()
    if spec.status is not None:
        wanted = [s for s in STATUSES if spec.status.get(s, 0) > 0]
        ok &= rows["status"].isin(wanted).to_numpy()
    if spec.states is not None:
        ok &= rows["state"].isin(spec.states).to_numpy()
    if spec.exclude_states:
        ok &= ~rows["state"].isin(spec.exclude_states).to_numpy()
    price = rows["price"].to_numpy()
    if spec.price_min is not None:
        ok &= price > spec.price_min
    if spec.price_max is not None:
        ok &= price <= spec.price_max
    return ok
