"""Cleaning rules: raw rows (text as received) in, typed listings and a per-rule report out.

Every rule lives here and is counted, so a batch report says how many rows each rule dropped or
fixed. A *fix* blanks one impossible or unparseable feature value and keeps the row (the model
pipeline imputes missing features); a *drop* removes the row. Rows are only dropped when the
target is unusable or the row is a duplicate: losing a whole listing for one bad feature would
throw away good evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from tasador.core.columns import RAW_COLUMNS, STATUSES
from tasador.core.errors import BadInput

# Plausible ranges. Outside them a value is impossible (a data error), not merely unusual.
PRICE_MIN = 1_000.0  # the raw file has $1 listings: placeholders, not prices
PRICE_MAX = 100_000_000.0
BED_MAX = 50
BATH_MAX = 50
HOUSE_SIZE_MIN = 100.0  # square feet
HOUSE_SIZE_MAX = 100_000.0
ACRE_LOT_MAX = 100_000.0
OLDEST_SALE = pd.Timestamp("1900-01-01")

_FLOAT_COLUMNS = ("price", "bed", "bath", "acre_lot", "house_size")
_ID_COLUMNS = ("brokered_by", "street")
# Ids are stored as int64 digits; a larger value used to wrap to -9223372036854775808.
ID_MAX = 2.0**63  # the first float int64 cannot hold (float(2**63 - 1) rounds up to it)


@dataclass
class CleaningReport:
    """Rows in and out of cleaning, and per rule the rows dropped, values fixed and missing."""

    rows_in: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    fixed: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)

    def drop(self, rule: str, n: int) -> None:
        self.dropped[rule] = self.dropped.get(rule, 0) + int(n)

    def fix(self, rule: str, n: int) -> None:
        self.fixed[rule] = self.fixed.get(rule, 0) + int(n)

    def as_dict(self) -> dict[str, object]:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "dropped": dict(self.dropped),
            "fixed": dict(self.fixed),
            "missing": dict(self.missing),
        }


def _text(series: pd.Series) -> pd.Series:
    """Strip and blank-out empty strings, keeping missing values missing."""
    s = series.astype("string").str.strip()
    return s.mask(s.isin(["", "nan", "NaN", "None", "null", "NULL"]))


def _parse_numbers(frame: pd.DataFrame, report: CleaningReport) -> None:
    for col in _FLOAT_COLUMNS:
        text = _text(frame[col])
        parsed = pd.to_numeric(text, errors="coerce")
        bad = text.notna() & parsed.isna()
        report.fix(f"type_error_{col}", bad.sum())
        frame[col] = parsed.astype("float64")


def _parse_ids(frame: pd.DataFrame, report: CleaningReport) -> None:
    """Broker and street ids arrive as floats ("40618.0"): keep the integer's digits.

    An id int64 cannot hold (or infinite) is blanked and counted as ``id_out_of_range_<col>``.
    """
    for col in _ID_COLUMNS:
        text = _text(frame[col])
        parsed = pd.to_numeric(text, errors="coerce").astype("float64")
        bad = (text.notna() & parsed.isna()) | (parsed < 0)
        out_of_range = parsed.notna() & ~bad & ((parsed >= ID_MAX) | ~np.isfinite(parsed))
        report.fix(f"type_error_{col}", bad.sum())
        report.fix(f"id_out_of_range_{col}", out_of_range.sum())
        keep = ~(bad | out_of_range)
        frame[col] = parsed.where(keep).round().astype("Int64").astype("string")


def _parse_zip(frame: pd.DataFrame, report: CleaningReport) -> None:
    """Zip codes arrive as numbers with leading zeros lost: restore five digits."""
    text = _text(frame["zip_code"])
    parsed = pd.to_numeric(text, errors="coerce")
    bad = (text.notna() & parsed.isna()) | (parsed < 0) | (parsed > 99_999)
    report.fix("type_error_zip_code", bad.sum())
    digits = parsed.where(~bad).round().astype("Int64").astype("string")
    frame["zip_code"] = digits.str.zfill(5)


def _parse_categories(frame: pd.DataFrame, report: CleaningReport) -> None:
    status = _text(frame["status"]).str.lower().str.replace(" ", "_", regex=False)
    unknown = status.notna() & ~status.isin(STATUSES)
    report.fix("unknown_status", unknown.sum())
    frame["status"] = status.mask(unknown)
    for col in ("city", "state"):
        frame[col] = _text(frame[col])


def _parse_dates(frame: pd.DataFrame, report: CleaningReport) -> None:
    text = _text(frame["prev_sold_date"])
    parsed = pd.to_datetime(text, errors="coerce", format="%Y-%m-%d")
    bad = text.notna() & parsed.isna()
    report.fix("type_error_prev_sold_date", bad.sum())
    impossible = (parsed < OLDEST_SALE) | (parsed > pd.Timestamp(date.today()))
    report.fix("impossible_prev_sold_date", impossible.sum())
    frame["prev_sold_date"] = parsed.mask(impossible).astype("datetime64[ns]")


def _blank_impossible(frame: pd.DataFrame, report: CleaningReport) -> None:
    rules = {
        "bed": (frame["bed"] < 0) | (frame["bed"] > BED_MAX),
        "bath": (frame["bath"] < 0) | (frame["bath"] > BATH_MAX),
        "house_size": (frame["house_size"] < HOUSE_SIZE_MIN)
        | (frame["house_size"] > HOUSE_SIZE_MAX),
        "acre_lot": (frame["acre_lot"] < 0) | (frame["acre_lot"] > ACRE_LOT_MAX),
    }
    for col, impossible in rules.items():
        report.fix(f"impossible_{col}", impossible.sum())
        frame.loc[impossible, col] = np.nan


def _drop(frame: pd.DataFrame, mask: pd.Series, rule: str, report: CleaningReport) -> pd.DataFrame:
    report.drop(rule, mask.sum())
    return frame.loc[~mask]


def clean_frame(raw: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
    """Type, validate and de-duplicate one batch. The index of ``raw`` is kept for lineage."""
    missing_cols = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing_cols:
        raise BadInput(f"raw rows lack columns: {', '.join(missing_cols)}")
    report = CleaningReport(rows_in=len(raw))
    frame = raw.loc[:, list(RAW_COLUMNS)].copy()

    _parse_numbers(frame, report)
    _parse_ids(frame, report)
    _parse_zip(frame, report)
    _parse_categories(frame, report)
    _parse_dates(frame, report)
    _blank_impossible(frame, report)

    frame = _drop(frame, frame["price"].isna(), "missing_target", report)
    frame = _drop(frame, frame["price"] <= 0, "impossible_price", report)
    price_outlier = (frame["price"] < PRICE_MIN) | (frame["price"] > PRICE_MAX)
    frame = _drop(frame, price_outlier, "price_outlier", report)
    frame = _drop(frame, frame.duplicated(keep="first"), "duplicate_in_batch", report)

    report.rows_out = len(frame)
    report.missing = {c: int(n) for c, n in frame.isna().sum().items() if n}
    return frame, report
