"""Where batches come from: the generator driven by a scenario (or, in csv_source, a CSV).

A batch is a pure function of (source, group, day, batch number): the same request gets the same
rows in any process, and groups (and days) draw different samples of the same plan.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Protocol

import numpy as np
import pandas as pd

from datasource.dirty import corrupt
from datasource.generator import generate_listings
from datasource.scenarios import BatchSpec, Scenario

DAYS: tuple[str | None, ...] = (None, "Tuesday", "Wednesday")
CACHED_BATCHES = 4  # recent batches kept in memory (a batch at scale 1 is ~100 MB)


class BatchSource(Protocol):
    """Something that builds a scenario's batches for a group and day."""

    scenario: Scenario

    @property
    def key(self) -> str:
        """Identifies what is served; a cursor belongs to one key."""
        ...

    def batch(self, group: int, day: str | None, number: int) -> pd.DataFrame: ...

    def batch_sizes(self) -> list[int]: ...


def batch_seed(seed: int, group: int, day: str | None, number: int) -> tuple[int, ...]:
    """The random seed of one batch, from the base seed, group, day and batch number."""
    return (seed, group, DAYS.index(day), number)


def short_hash(text: str) -> str:
    """The first 16 hex digits of the text's sha256."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finish(
    frame: pd.DataFrame, spec: BatchSpec, seed: tuple[int, ...], *, reprice: bool
) -> pd.DataFrame:
    """Post-processing every source shares: price level (when not generated in) and dirt."""
    if reprice and spec.price_multiplier != 1.0:
        frame = frame.assign(price=frame["price"] * spec.price_multiplier)
    return corrupt(frame, spec.dirty, np.random.default_rng([*seed, 1]))


class ScenarioSource:
    """Generated listings following a scenario."""

    def __init__(self, scenario: Scenario, scale: float, seed: int) -> None:
        if scale <= 0:
            raise ValueError("scale must be > 0")
        self.scenario = scenario
        self.scale = scale
        self.seed = seed
        self.batch = lru_cache(maxsize=CACHED_BATCHES)(self._build)

    @property
    def key(self) -> str:
        return short_hash(f"scenario|{self.scenario.fingerprint}|{self.scale!r}|{self.seed}")

    def batch_sizes(self) -> list[int]:
        return [b.rows_at(self.scale, self.scenario.min_rows) for b in self.scenario.batches]

    def _build(self, group: int, day: str | None, number: int) -> pd.DataFrame:
        spec = self.scenario.batches[number]
        seed = batch_seed(self.seed, group, day, number)
        frame = generate_listings(
            spec.rows_at(self.scale, self.scenario.min_rows),
            seed=(*seed, 0),
            **spec.generator_knobs(),
        )
        return finish(frame, spec, seed, reprice=False)
