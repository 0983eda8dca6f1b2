"""Promotion on evidence: does the challenger beat production on the shared holdout beyond noise,
and without hurting a part of the market?

Both models price the same holdout rows, so the comparison is paired. :func:`weigh` applies three
guards, in order, and the first that fails decides:

1. **Interval.** A paired bootstrap of the relative RMSLE improvement (``1 - challenger RMSLE /
   production RMSLE``): the holdout rows are resampled with replacement ``draws`` times, the same
   rows for both models, and each draw's improvement is computed from the rows' squared log
   errors. The central ``confidence`` interval of those improvements must lie wholly above the
   margin: a 1% gain measured on a few hundred rows is usually noise and is refused.
2. **Segments.** Each state, and land and houses (``tasador.core.columns``: land has no bed, bath
   or house size), with at least ``min_rows`` holdout rows: the challenger's RMSLE there must not
   be worse than production's by more than ``limit`` (relative). A better average bought with
   much worse prices in one state is refused; the worst such segment is named.
3. **Median error.** The challenger's median absolute percentage error (MdAPE, the typical
   listing's error) must not be worse than production's, as shown to 0.1 point.

The bootstrap is seeded, so the same models on the same holdout always get the same verdict.
:func:`score` prices the holdout with a model, :func:`evidence_for` weighs two scored models with
the settings' rules and :func:`summarize` writes the verdict sentence (experiments.champion
decides with them under the promotion lock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from experiments.inputs import model_input
from experiments.scoring.ranges import land_of
from tasador.core.columns import HOUSES, LAND, TARGET
from tasador.core.config import Settings
from tasador.core.metrics import (
    PRIMARY,
    percentage_errors,
    regression_metrics,
    squared_log_errors,
)

SEED = 30  # fixed: a re-run of the same decision draws the same resamples
# Row indices drawn per block (int64): the draws are made in blocks of about this many cells,
# so a holdout of 100k rows needs ~100 MB at a time rather than 1.6 GB for 2,000 draws at once.
BLOCK_CELLS = 4_000_000
# The MdAPE guard compares at the precision the verdict shows (0.1 percentage point).
MDAPE_PRECISION = 0.001

Guard = Literal["interval", "segment", "mdape", "evidence"]


def listing_kinds(frame: pd.DataFrame) -> pd.Series:
    """``land`` for a row without bed, bath and house size; ``houses`` for any other."""
    return pd.Series(np.where(land_of(frame), LAND, HOUSES), index=frame.index)


@dataclass(frozen=True)
class Segment:
    """Both models' holdout RMSLE on one state or kind."""

    name: str  # "Texas", "land", "houses"
    rows: int
    challenger_rmsle: float
    production_rmsle: float

    @property
    def worse_by(self) -> float:
        """How much worse the challenger is here, relative (negative: better)."""
        if self.production_rmsle == 0:
            return 0.0 if self.challenger_rmsle == 0 else np.inf
        return self.challenger_rmsle / self.production_rmsle - 1.0


@dataclass(frozen=True)
class Evidence:
    """The figures the verdict rests on, and which guard decided."""

    challenger_rmsle: float
    production_rmsle: float
    low: float  # the improvement interval's ends, relative (0.05: 5% lower RMSLE)
    high: float
    confidence: float
    margin: float
    challenger_mdape: float
    production_mdape: float
    segments: tuple[Segment, ...]  # those with enough rows, worst for the challenger first
    limit: float
    min_rows: int
    rows: int
    guard: Guard  # the guard that refused; "evidence" when all passed
    at_fault: Segment | None  # the segment that refused the challenger

    @property
    def passed(self) -> bool:
        return self.guard == "evidence"

    def sentence(self) -> str:
        """The figures and the deciding guard in words, after "Version N (not) promoted: "."""
        head = (
            f"holdout RMSLE {self.production_rmsle:.3f} -> {self.challenger_rmsle:.3f} on "
            f"{self.rows:,} rows; {_percent(self.confidence)} interval of the improvement "
            f"{self.low:+.1%} to {self.high:+.1%}"
        )
        limit, margin = _percent(self.limit), _percent(self.margin)
        mdape = f"MdAPE {self.production_mdape:.1%} -> {self.challenger_mdape:.1%}"
        if self.guard == "interval":
            return f"{head}, not wholly beyond the {margin} margin (too little evidence)."
        head += f", beyond the {margin} margin"
        if self.guard == "segment" and self.at_fault is not None:
            s = self.at_fault
            return (
                f"{head}, but it is {s.worse_by:.0%} worse for {s.name} ({s.rows:,} rows, RMSLE "
                f"{s.production_rmsle:.3f} -> {s.challenger_rmsle:.3f}; the limit is {limit})."
            )
        if self.guard == "mdape":
            return f"{head}, but its median error is worse ({mdape})."
        return (
            f"{head}; {mdape}; no state or kind worse by more than {limit} "
            f"({len(self.segments)} with at least {self.min_rows:,} rows checked)."
        )

    def figures(self) -> dict[str, float]:
        """The numbers to log (MLflow metrics), by name."""
        return {
            "promotion_improvement_low": self.low,
            "promotion_improvement_high": self.high,
            "promotion_confidence": self.confidence,
            "promotion_production_rmsle": self.production_rmsle,
            "promotion_production_mdape": self.production_mdape,
            "promotion_segments_checked": float(len(self.segments)),
        }

    def segment_table(self) -> pd.DataFrame:
        """One row per segment checked, worst for the challenger first."""
        return pd.DataFrame(
            [
                {
                    "segment": s.name,
                    "rows": s.rows,
                    "production_rmsle": s.production_rmsle,
                    "challenger_rmsle": s.challenger_rmsle,
                    "worse_by": s.worse_by,
                }
                for s in self.segments
            ],
            columns=["segment", "rows", "production_rmsle", "challenger_rmsle", "worse_by"],
        )


def _percent(share: float) -> str:
    """0.01 as "1%", 0.005 as "0.5%": a setting as the user wrote it."""
    return f"{share * 100:g}%"


def improvement_interval(
    challenger_sq: np.ndarray, production_sq: np.ndarray, draws: int, confidence: float
) -> tuple[float, float]:
    """The central ``confidence`` interval of the relative RMSLE improvement over ``draws``
    paired resamples of the rows (each row's squared log error under both models)."""
    n = len(challenger_sq)
    rng = np.random.default_rng(SEED)
    block = max(1, BLOCK_CELLS // n)
    ratios = []
    for start in range(0, draws, block):
        rows = rng.integers(0, n, size=(min(block, draws - start), n))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.sqrt(challenger_sq[rows].mean(axis=1) / production_sq[rows].mean(axis=1))
        ratios.append(np.nan_to_num(ratio, nan=1.0))  # 0/0: both perfect on the draw, no gain
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(1.0 - np.concatenate(ratios), [tail, 1.0 - tail])
    return float(low), float(high)


def _segments(
    holdout: pd.DataFrame, challenger_sq: np.ndarray, production_sq: np.ndarray, min_rows: int
) -> tuple[Segment, ...]:
    """Every state and kind with at least ``min_rows`` rows, worst for the challenger first."""
    errors = pd.DataFrame({"c": challenger_sq, "p": production_sq}, index=holdout.index)
    found = []
    for labels in (holdout["state"], listing_kinds(holdout)):
        grouped = errors.groupby(labels.to_numpy(), dropna=True)
        means, sizes = grouped.mean(), grouped.size()
        for name in sizes[sizes >= min_rows].index:
            c, p = np.sqrt(means.loc[name, "c"]), np.sqrt(means.loc[name, "p"])
            found.append(Segment(str(name), int(sizes[name]), float(c), float(p)))
    return tuple(sorted(found, key=lambda s: -s.worse_by))


def weigh(
    holdout: pd.DataFrame,
    challenger: np.ndarray,
    production: np.ndarray,
    *,
    margin: float,
    confidence: float,
    draws: int,
    limit: float,
    min_rows: int,
) -> Evidence:
    """The evidence for promoting ``challenger`` over ``production`` (both models' finite
    predictions for the ``holdout`` rows, in order): the three guards of the module."""
    prices = holdout[TARGET].to_numpy(dtype=float)
    c_sq, p_sq = squared_log_errors(prices, challenger), squared_log_errors(prices, production)
    low, high = improvement_interval(c_sq, p_sq, draws, confidence)
    segments = _segments(holdout, c_sq, p_sq, min_rows)
    c_mdape = float(np.median(percentage_errors(prices, challenger)))
    p_mdape = float(np.median(percentage_errors(prices, production)))
    at_fault = next((s for s in segments if s.worse_by > limit), None)
    guard: Guard = "evidence"
    if low < margin:
        guard = "interval"
    elif at_fault is not None:
        guard = "segment"
    elif round(c_mdape / MDAPE_PRECISION) > round(p_mdape / MDAPE_PRECISION):
        guard = "mdape"
    return Evidence(
        challenger_rmsle=float(np.sqrt(c_sq.mean())),
        production_rmsle=float(np.sqrt(p_sq.mean())),
        low=low,
        high=high,
        confidence=confidence,
        margin=margin,
        challenger_mdape=c_mdape,
        production_mdape=p_mdape,
        segments=segments,
        limit=limit,
        min_rows=min_rows,
        rows=len(prices),
        guard=guard,
        at_fault=at_fault if guard == "segment" else None,
    )


@dataclass(frozen=True)
class Scored:
    """One model version's holdout metrics, as challenger or production."""

    role: str  # "challenger" or "production"
    version: int
    family: str
    metrics: dict[str, float]  # the RMSLE is NaN when any prediction is not finite
    non_finite: int = 0  # holdout rows the model priced NaN or infinite
    # Its price for each holdout row, in order: the paired bootstrap resamples them.
    predictions: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    @property
    def finite(self) -> bool:
        """Every holdout prediction was a finite number."""
        return self.non_finite == 0 and math.isfinite(self.metrics[PRIMARY])


def score(role: str, version: int, family: str, model: Any, holdout: pd.DataFrame) -> Scored:
    """A model's metrics on the holdout rows, with how many rows it priced non-finite."""
    predictions = np.asarray(model.predict(model_input(holdout)), dtype=float).reshape(-1)
    non_finite = int((~np.isfinite(predictions)).sum())
    metrics = regression_metrics(holdout[TARGET], predictions)
    if non_finite:
        # rmsle clips -inf to zero: a broken model must not get a finite score from it.
        metrics[PRIMARY] = math.nan
    return Scored(role, version, family, metrics, non_finite, predictions)


def evidence_for(
    settings: Settings, holdout: pd.DataFrame, challenger: Scored, production: Scored | None
) -> Evidence | None:
    """The evidence for replacing ``production`` by ``challenger``; None when no comparison is
    needed (nothing serves, or either model priced a row NaN or infinite)."""
    if production is None or not (challenger.finite and production.finite):
        return None
    rules = settings.promotion
    return weigh(
        holdout,
        challenger.predictions,
        production.predictions,
        margin=rules.promotion_margin,
        confidence=rules.promotion_confidence,
        draws=rules.promotion_bootstrap_draws,
        limit=rules.promotion_segment_limit,
        min_rows=rules.promotion_min_segment_rows,
    )


def summarize(challenger: Scored, production: Scored | None, evidence: Evidence | None) -> str:
    """One sentence on whether the challenger was promoted and why: the figures of the
    evidence and the guard that decided, or why no evidence was needed."""
    c = challenger.metrics[PRIMARY]
    if not challenger.finite:
        keeps = (
            f"production stays version {production.version}"
            if production is not None
            else "nothing serves yet"
        )
        return (
            f"Version {challenger.version} not promoted: it priced "
            f"{challenger.non_finite:,} holdout rows NaN or infinite, and a model whose output "
            f"is not finite is never promoted ({keeps})."
        )
    if production is None:
        return f"Version {challenger.version} promoted: no production model yet (RMSLE {c:.4f})."
    if not production.finite:
        return (
            f"Version {challenger.version} promoted: holdout RMSLE {c:.4f}, while production "
            f"version {production.version} priced {production.non_finite:,} holdout rows NaN "
            "or infinite, so any finite challenger beats it."
        )
    assert evidence is not None  # both outputs finite: weighed
    verdict = "promoted" if evidence.passed else "not promoted"
    return (
        f"Version {challenger.version} {verdict}: against production version "
        f"{production.version}, {evidence.sentence()}"
    )


def decided_by(challenger: Scored, production: Scored | None, evidence: Evidence | None) -> str:
    """The rule that decided, as the audit row stores it (promotions.GUARDS)."""
    if not challenger.finite:
        return "challenger not finite"
    if production is None:
        return "first version"
    if evidence is None:
        return "production not finite"
    return evidence.guard
