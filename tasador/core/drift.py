"""Drift statistics: how far a new batch's distributions sit from the reference (training) rows.

Pure functions on pandas Series / count arrays; thresholds and verdicts live in
``tasador.loop.decide``. Everything here is plain numpy and scipy.stats rather than a drift library
such as Evidently: the five statistics we need (PSI, KS, chi-square, unseen-category share, a
Good-Turing estimate of the unseen share to expect by chance) are a few lines each; Evidently
would pull in a large dependency tree (and its own pinned pandas/pydantic ranges) to produce
HTML reports we do not show, and its presets decide bucketing and test choice for us, while here
every number stored in a decision is one we can explain.

Conventions:
- **PSI** (population stability index) ``sum((q - p) * ln(q / p))`` over buckets, where ``p`` is
  the reference share and ``q`` the batch share. Numeric buckets are the reference's deciles;
  categorical buckets are the reference's most frequent categories and one "other" bucket (which
  collects categories the reference never saw). Shares are smoothed with half a row per bucket
  so an empty bucket gives a large but finite PSI.
- Every statistic compares the values present: missing values are a data-quality matter (the
  cleaning step blanks impossible values, so a dirty feed shows up as more missing cells), and
  ``missing_share`` reports them separately.
- **KS**: scipy's two-sample Kolmogorov-Smirnov on the non-missing values (statistic D = largest
  gap between the two empirical CDFs, an effect size in [0, 1]).
- **Chi-square**: test of homogeneity on the same bucket counts as the PSI.
- **Unseen share**: the share of batch rows whose category never occurs in the reference. High
  cardinality columns (city, zip code) always show some unseen values by chance, so the
  Good-Turing estimate (reference values seen exactly once / reference rows) gives the share to
  expect when nothing changed.
- Large inputs are sampled (``sample``) before the sorting-based statistics; category sets for
  the unseen share always use every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

DECILES = 10
TOP_CATEGORIES = 20
SMOOTHING = 0.5  # rows added to every bucket before taking shares
OTHER = "(other)"


@dataclass(frozen=True)
class Buckets:
    """Counts of the reference and the batch over the same buckets."""

    labels: list[str]
    reference: np.ndarray
    current: np.ndarray


@dataclass(frozen=True)
class TestResult:
    """A statistical test's statistic and p-value."""

    statistic: float
    p_value: float


@dataclass(frozen=True)
class Unseen:
    """Categorical values of a batch that its reference never had, against what chance predicts."""

    share: float  # share of batch rows (with a value) whose value the reference never had
    expected_share: float  # Good-Turing: what to expect by chance with this reference
    top: list[tuple[str, int]]  # the most frequent unseen values and their batch row counts


def as_numbers(series: pd.Series) -> np.ndarray:
    """Float values of a numeric or datetime column (dates as decimal years), NaN for missing."""
    if pd.api.types.is_datetime64_any_dtype(series):
        dates = pd.DatetimeIndex(series)
        return np.asarray(dates.year + (dates.dayofyear - 1) / 365.25, dtype=float)
    numbers = pd.to_numeric(series, errors="coerce")
    return cast(np.ndarray, numbers.to_numpy(dtype=float, na_value=np.nan))


def numeric_buckets(reference: pd.Series, current: pd.Series, bins: int = DECILES) -> Buckets:
    """Buckets at the reference's quantiles (duplicate edges merged, e.g. for integer bedrooms)."""
    ref, cur = _present(as_numbers(reference)), _present(as_numbers(current))
    if len(ref):
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
        edges = edges[edges > ref.min()]  # no bucket may lie below every reference value
    else:
        edges = np.array([])
    n = len(edges) + 1
    return Buckets(
        labels=[_interval(edges, i) for i in range(n)],
        reference=np.bincount(np.searchsorted(edges, ref, side="right"), minlength=n),
        current=np.bincount(np.searchsorted(edges, cur, side="right"), minlength=n),
    )


def _present(values: np.ndarray) -> np.ndarray:
    return cast(np.ndarray, values[~np.isnan(values)])


def _interval(edges: np.ndarray, i: int) -> str:
    low = f"{edges[i - 1]:.4g}" if i > 0 else "-inf"
    high = f"{edges[i]:.4g}" if i < len(edges) else "inf"
    return f"[{low}, {high})"


def categorical_buckets(
    reference: pd.Series, current: pd.Series, top: int = TOP_CATEGORIES
) -> Buckets:
    """The reference's ``top`` most frequent categories, then one "other" bucket."""
    ref_counts = reference.dropna().astype("string").value_counts()
    cur_counts = current.dropna().astype("string").value_counts()
    kept = [str(v) for v in ref_counts.index[:top]]
    ref_kept = ref_counts.reindex(kept, fill_value=0).to_numpy()
    cur_kept = cur_counts.reindex(kept, fill_value=0).to_numpy()
    return Buckets(
        labels=[*kept, OTHER],
        reference=np.append(ref_kept, ref_counts.sum() - ref_kept.sum()),
        current=np.append(cur_kept, cur_counts.sum() - cur_kept.sum()),
    )


def shares(counts: np.ndarray) -> np.ndarray:
    """Smoothed shares: every bucket gets half a row, so none is exactly zero."""
    smoothed = np.asarray(counts, dtype=float) + SMOOTHING
    return cast(np.ndarray, smoothed / smoothed.sum())


def psi(buckets: Buckets) -> float:
    """Population stability index of the batch against the reference (0 = identical)."""
    if buckets.reference.sum() == 0 or buckets.current.sum() == 0:
        raise ValueError("PSI needs at least one value on each side")
    p, q = shares(buckets.reference), shares(buckets.current)
    return float(np.sum((q - p) * np.log(q / p)))


def chi_square(buckets: Buckets) -> TestResult:
    """Chi-square test that both sides come from the same bucket distribution."""
    table = np.vstack([buckets.reference, buckets.current])
    table = table[:, table.sum(axis=0) > 0]  # a bucket empty on both sides says nothing
    if table.shape[1] < 2:
        return TestResult(statistic=0.0, p_value=1.0)
    from scipy import stats  # here: the UI reads stored evidence and has no scipy (its image)

    result = stats.chi2_contingency(table, correction=False)
    return TestResult(statistic=float(result.statistic), p_value=float(result.pvalue))


def ks_two_sample(reference: pd.Series, current: pd.Series) -> TestResult | None:
    """Two-sample KS on the non-missing values; None when a side has no value at all."""
    ref, cur = _present(as_numbers(reference)), _present(as_numbers(current))
    if len(ref) == 0 or len(cur) == 0:
        return None
    # The asymptotic p-value: the exact one costs O(n*m) and adds nothing at these sizes.
    from scipy import stats  # here, as in chi_square

    result = stats.ks_2samp(ref, cur, method="asymp")
    return TestResult(statistic=float(result.statistic), p_value=float(result.pvalue))


def unseen(reference: pd.Series, current: pd.Series, top: int = 5) -> Unseen:
    """Share of batch rows with a category the reference never had, and what chance explains."""
    ref = reference.dropna().astype("string")
    cur = current.dropna().astype("string")
    if len(cur) == 0:
        return Unseen(share=0.0, expected_share=0.0, top=[])
    ref_counts = ref.value_counts()
    new = cur[~cur.isin(ref_counts.index)]
    singletons = int((ref_counts == 1).sum())
    return Unseen(
        share=len(new) / len(cur),
        expected_share=singletons / len(ref) if len(ref) else 1.0,
        top=[(str(v), int(n)) for v, n in new.value_counts().head(top).items()],
    )


def median(series: pd.Series) -> float | None:
    """Median of a numeric or date column, ignoring missing values; None when none is present."""
    values = _present(as_numbers(series))
    return float(np.median(values)) if len(values) else None


def missing_share(series: pd.Series) -> float:
    """Share of missing values in the series (0.0 when empty)."""
    return float(series.isna().mean()) if len(series) else 0.0
