"""A version's calibrated price ranges as data: what serving reads to give a range with a price.

What: ``ranges.json`` in the scoring artifact's folder (experiments.scoring.artifact), written at
registration by experiments.calibration. For each kind of listing (houses, land: a plot has no
bed, bath nor house size) and, within it, each bin of predicted log price (the difficulty
estimate: cheap listings are priced less surely than dear ones), the ends of the conformal
interval in log price (``low <= 0 <= high``) for every coverage of ``RANGE_COVERAGES``
(``tasador.core.config``). A listing's range is then ``price x exp(low)`` to
``price x exp(high)``: two lookups and an ``exp`` per listing, vectorised, so the hot path stays
fast and serving picks its configured coverage at runtime.

Also stored: how the ranges were calibrated (in words) and the coverage they reached on the
version's shared holdout, overall and per kind, which ``/model`` states.

Only numpy and JSON here: serving reads this module, and it reads no code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasador.core.columns import BUILDING_COLUMNS, HOUSES, LAND

FORMAT = 1
RANGE_FILE = "ranges.json"  # in the scoring artifact's folder
KINDS = (HOUSES, LAND)
OVERALL = "overall"


class RangesError(Exception):
    """A ranges file that is not one this code reads."""


def percent(coverage: float) -> str:
    """A coverage as its key in the file and in metric names: 0.8 -> "80"."""
    return str(round(coverage * 100))


def is_land(bed: np.ndarray, bath: np.ndarray, house_size: np.ndarray) -> np.ndarray:
    """A plot of land: no bed, bath nor house size (NaN: missing). The one rule: the gate's
    segments, the calibration and serving's ranges all tell land by it (:func:`land_of`)."""
    land: np.ndarray = np.isnan(bed) & np.isnan(bath) & np.isnan(house_size)
    return land


def land_of(frame: pd.DataFrame) -> np.ndarray:
    """Which rows of a CLEAN or model-input frame are plots of land (:func:`is_land`)."""
    bed, bath, size = (
        frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in BUILDING_COLUMNS
    )
    return is_land(bed, bath, size)


@dataclass(frozen=True)
class KindTable:
    """One kind's bins: inner bin edges on predicted log price and, per bin, the interval's
    ends in log price for each coverage (``lows[bin, coverage]``, ``highs[bin, coverage]``)."""

    edges: np.ndarray  # ascending; bin i holds edges[i-1] < log price <= edges[i]
    lows: np.ndarray  # (bins, len(coverages)), <= 0
    highs: np.ndarray  # (bins, len(coverages)), >= 0
    rows: int  # calibration rows of this kind
    pooled: bool = False  # too few rows of its own: the bins of every kind together

    def bins(self, log_prices: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, log_prices, side="left")


@dataclass(frozen=True)
class RangeTable:
    """A version's price ranges (see the module doc)."""

    coverages: tuple[float, ...]
    kinds: dict[str, KindTable]
    calibration: str  # how, in words: which rows, how many
    holdout: dict[str, dict[str, float]] = field(default_factory=dict)  # "80" -> kind -> share
    holdout_rows: dict[str, int] = field(default_factory=dict)  # kind -> rows

    def column(self, coverage: float) -> int | None:
        """The index of ``coverage`` in the table; None when it was not calibrated for."""
        for i, calibrated in enumerate(self.coverages):
            if abs(calibrated - coverage) < 1e-9:
                return i
        return None

    def offsets(
        self, prices: np.ndarray, land: np.ndarray, coverage: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each listing's interval ends in log price, relative to its price, at ``coverage``
        (one of ``coverages``)."""
        column = self.column(coverage)
        if column is None:
            raise KeyError(f"no ranges calibrated for coverage {coverage}")
        with np.errstate(divide="ignore", invalid="ignore"):
            log_prices = np.log(prices)
        low = np.empty(len(prices), dtype=np.float64)
        high = np.empty(len(prices), dtype=np.float64)
        for kind, mask in ((HOUSES, ~land), (LAND, land)):
            table = self.kinds[kind]
            bins = table.bins(log_prices[mask])
            low[mask] = table.lows[bins, column]
            high[mask] = table.highs[bins, column]
        return low, high

    def bounds(
        self, prices: np.ndarray, land: np.ndarray, coverage: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each listing's low and high price at ``coverage``."""
        low, high = self.offsets(prices, land, coverage)
        return prices * np.exp(low), prices * np.exp(high)

    def measure(
        self, prices: np.ndarray, truth: np.ndarray, land: np.ndarray
    ) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
        """The share of ``truth`` inside the ranges, per coverage (its percent key), overall and
        per kind (a kind without rows is left out); and the rows counted per kind."""
        rows = {OVERALL: len(truth), HOUSES: int((~land).sum()), LAND: int(land.sum())}
        shares: dict[str, dict[str, float]] = {}
        for coverage in self.coverages:
            low, high = self.bounds(prices, land, coverage)
            inside = (truth >= low) & (truth <= high)
            masks = {OVERALL: np.ones(len(truth), bool), HOUSES: ~land, LAND: land}
            shares[percent(coverage)] = {
                kind: float(inside[mask].mean()) for kind, mask in masks.items() if mask.any()
            }
        return shares, rows

    def data(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "scale": "log price",
            "coverages": list(self.coverages),
            "calibration": self.calibration,
            "kinds": {
                kind: {
                    "edges": t.edges.tolist(),
                    "lows": t.lows.tolist(),
                    "highs": t.highs.tolist(),
                    "rows": t.rows,
                    "pooled": t.pooled,
                }
                for kind, t in self.kinds.items()
            },
            "holdout": self.holdout,
            "holdout_rows": self.holdout_rows,
        }


def write(table: RangeTable, folder: Path) -> None:
    (folder / RANGE_FILE).write_text(json.dumps(table.data()))


def _kind(data: Mapping[str, Any], columns: int) -> KindTable:
    edges = np.asarray(data["edges"], dtype=np.float64).reshape(-1)
    lows = np.asarray(data["lows"], dtype=np.float64)
    highs = np.asarray(data["highs"], dtype=np.float64)
    shape = (len(edges) + 1, columns)
    if lows.shape != shape or highs.shape != shape:
        raise RangesError(f"interval ends of shape {lows.shape}, {highs.shape}; not {shape}")
    # Finite, and the price inside its own range: anything else would answer nonsense.
    if not (np.isfinite(lows).all() and np.isfinite(highs).all()):
        raise RangesError("interval ends that are not finite")
    if (lows > 0).any() or (highs < 0).any() or (np.diff(edges) < 0).any():
        raise RangesError("interval ends on the wrong side of the price, or bins out of order")
    return KindTable(edges, lows, highs, int(data["rows"]), bool(data.get("pooled", False)))


def read(folder: Path) -> RangeTable | None:
    """The ranges stored in an artifact folder; None when it has none (registered before
    versions had ranges); RangesError when the file is not one this code reads."""
    path = folder / RANGE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise RangesError(f"ranges format {data.get('format')!r}, not {FORMAT}")
        coverages = tuple(float(c) for c in data["coverages"])
        kinds = {kind: _kind(data["kinds"][kind], len(coverages)) for kind in KINDS}
        return RangeTable(
            coverages=coverages,
            kinds=kinds,
            calibration=str(data["calibration"]),
            holdout={k: {g: float(s) for g, s in v.items()} for k, v in data["holdout"].items()},
            holdout_rows={k: int(v) for k, v in data["holdout_rows"].items()},
        )
    except RangesError as exc:
        raise RangesError(f"{RANGE_FILE}: {exc}") from exc
    except Exception as exc:  # unreadable or of another shape
        raise RangesError(f"{RANGE_FILE} unreadable ({type(exc).__name__}: {exc})") from exc
