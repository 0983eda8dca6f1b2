"""Make a batch dirty the way real feeds are: missing cells, duplicates, impossible values and
values of the wrong type. Deterministic given the random generator passed in."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

# Columns that may lose a value (the ids and the location stay, as in the real file).
BLANKABLE = ("price", "bed", "bath", "acre_lot", "house_size", "prev_sold_date", "city")
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six")


class DirtyKnobs(BaseModel):
    """How dirty a batch gets: shares of blank cells, duplicates, impossible and mistyped values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    missing_rate: float = Field(default=0.0, ge=0, le=1, description="extra share of blank cells")
    duplicate_rate: float = Field(default=0.0, ge=0, lt=1, description="rows that are copies")
    impossible_rate: float = Field(
        default=0.0, ge=0, le=1, description="rows with one impossible value"
    )
    wrong_type_rate: float = Field(
        default=0.0, ge=0, le=1, description="rows with one value of the wrong type"
    )

    @property
    def any(self) -> bool:
        rates = (self.missing_rate, self.duplicate_rate, self.impossible_rate)
        return any(rates) or self.wrong_type_rate > 0


def corrupt(frame: pd.DataFrame, knobs: DirtyKnobs, rng: np.random.Generator) -> pd.DataFrame:
    """A dirty copy of ``frame`` with the same number of rows."""
    out = frame.copy()
    n = len(out)
    if n == 0 or not knobs.any:
        return out
    for column in BLANKABLE:
        out.loc[rng.random(n) < knobs.missing_rate, column] = np.nan
    _impossible(out, np.flatnonzero(rng.random(n) < knobs.impossible_rate), rng)
    _wrong_types(out, np.flatnonzero(rng.random(n) < knobs.wrong_type_rate), rng)
    # Copies last, so that a duplicate repeats its original exactly, dirt included.
    is_copy = rng.random(n) < knobs.duplicate_rate
    originals = np.flatnonzero(~is_copy)
    copies = np.flatnonzero(is_copy)
    if len(copies) and len(originals):
        sources = originals[rng.integers(0, len(originals), len(copies))]
        for column in out.columns:
            values = out[column].to_numpy(copy=True)
            values[copies] = values[sources]
            out[column] = values
    return out


def _impossible(out: pd.DataFrame, rows: np.ndarray, rng: np.random.Generator) -> None:
    which = rng.integers(0, 5, len(rows))
    size = out["house_size"].to_numpy(dtype=float, na_value=np.nan)
    setters: tuple[tuple[str, Callable[[np.ndarray], np.ndarray]], ...] = (
        ("house_size", lambda r: -np.abs(np.nan_to_num(size[r], nan=1500.0))),
        ("bed", lambda r: np.full(len(r), 99.0)),
        ("price", lambda r: np.zeros(len(r))),
        ("price", lambda r: np.full(len(r), 250_000_000.0)),
        ("acre_lot", lambda r: np.full(len(r), -1.0)),
    )
    for i, (column, values) in enumerate(setters):
        picked = rows[which == i]
        if len(picked):
            out.iloc[picked, out.columns.get_loc(column)] = values(picked)


def _wrong_types(out: pd.DataFrame, rows: np.ndarray, rng: np.random.Generator) -> None:
    if len(rows) == 0:
        return
    which = rng.integers(0, 4, len(rows))
    words = np.array(NUMBER_WORDS, dtype=object)
    texts = {
        "bed": words[rng.integers(0, len(words), len(rows))],
        "bath": words[rng.integers(0, len(words), len(rows))],
        "price": np.full(len(rows), "N/A", dtype=object),
        "house_size": np.array(
            [
                "unknown" if np.isnan(v) else f"{int(v):,} sqft"
                for v in _as_float(out, "house_size", rows)
            ],
            dtype=object,
        ),
    }
    for i, (column, values) in enumerate(texts.items()):
        mask = which == i
        if mask.any():
            out[column] = out[column].astype(object)
            out.iloc[rows[mask], out.columns.get_loc(column)] = values[mask]


def _as_float(out: pd.DataFrame, column: str, rows: np.ndarray) -> np.ndarray:
    numbers = pd.to_numeric(out[column].iloc[rows], errors="coerce")
    return cast(np.ndarray, numbers.to_numpy(dtype=float))
