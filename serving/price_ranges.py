"""The calibrated range given with each price, and what ``/model`` says of it.

The ranges are the version's own (experiments.scoring.ranges: calibrated at registration, stored
in its scoring artifact as data), looked up at ``serving_range_coverage``: a listing's kind
(houses or land) and the bin of its predicted price pick the interval's ends, for a whole
request at once. A version registered before ranges still serves its prices; its ranges are
null and ``/model`` says why.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from experiments.scoring.ranges import OVERALL, RangeTable, is_land, percent
from serving.batch import ListingColumns
from serving.schema import Listing
from tasador.core.columns import HOUSES, LAND

NO_RANGES = (
    "no price ranges: the version was registered before versions stored them (or with too few "
    "training rows to calibrate them); its prices come without a range"
)


class PriceRange(BaseModel):
    """The ranges given with the version's prices: nominal and measured coverage."""

    coverage: float = Field(description="Nominal: the share of listings a range should contain.")
    available: bool = Field(description="Whether the version has ranges (else low/high null).")
    measured: dict[str, float] = Field(
        default_factory=dict,
        description="Share of the version's holdout inside its ranges: overall, houses, land.",
    )
    holdout_rows: dict[str, int] = Field(default_factory=dict)
    calibration: str | None = Field(default=None, description="Which rows calibrated them.")
    detail: str = Field(description="The above in words, or why there are no ranges.")


def _share(measured: dict[str, float], kind: str) -> str:
    return f"{measured[kind]:.1%}" if kind in measured else "no rows"


def describe(table: RangeTable | None, coverage: float) -> PriceRange:
    """What ``/model`` states of a version's ranges at ``coverage``."""
    if table is None:
        return PriceRange(coverage=coverage, available=False, detail=NO_RANGES)
    if table.column(coverage) is None:
        calibrated = ", ".join(f"{c:.0%}" for c in table.coverages)
        detail = f"no {coverage:.0%} ranges: the version's are calibrated for {calibrated}"
        return PriceRange(coverage=coverage, available=False, detail=detail)
    measured = table.holdout.get(percent(coverage), {})
    rows = table.holdout_rows
    detail = f"{coverage:.0%} ranges, calibrated on {table.calibration}"
    if measured:
        detail += (
            f"; on the version's {rows.get(OVERALL, 0):,} holdout rows they held "
            f"{_share(measured, OVERALL)} of prices (houses {_share(measured, HOUSES)}, "
            f"land {_share(measured, LAND)})"
        )
    return PriceRange(
        coverage=coverage,
        available=True,
        measured=measured,
        holdout_rows=rows,
        calibration=table.calibration,
        detail=detail,
    )


def bounds(
    table: RangeTable | None, listings: Sequence[Listing], prices: np.ndarray, coverage: float
) -> tuple[list[float], list[float]] | None:
    """Each listing's low and high price (rounded to cents); None when the version has no
    ranges at ``coverage``."""
    if table is None or table.column(coverage) is None:
        return None
    columns = ListingColumns.of(listings)
    land = is_land(columns.floats("bed"), columns.floats("bath"), columns.floats("house_size"))
    low, high = table.bounds(prices, land, coverage)
    # Rounded outward, so the rounded price stays inside its range.
    return (np.floor(low * 100) / 100).tolist(), (np.ceil(high * 100) / 100).tolist()
