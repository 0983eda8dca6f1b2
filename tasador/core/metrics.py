"""The metric set, fixed in one place: RMSLE is primary; MAE, MAPE, MdAPE and R² on the price
scale."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

PRIMARY = "rmsle"


def squared_log_errors(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """Each row's squared log error, the RMSLE's terms; predictions below zero count as zero."""
    t = np.log1p(np.asarray(y_true, dtype=float))
    p = np.log1p(np.clip(np.asarray(y_pred, dtype=float), 0, None))
    return np.asarray((t - p) ** 2)


def rmsle(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared log error; predictions below zero count as zero."""
    return float(np.sqrt(np.mean(squared_log_errors(y_true, y_pred))))


def percentage_errors(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """Each row's absolute error as a share of its price (a price under $1 counts as $1)."""
    t = np.asarray(y_true, dtype=float)
    return np.asarray(np.abs(np.asarray(y_pred, dtype=float) - t) / np.maximum(np.abs(t), 1.0))


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Every metric we report, on the original price scale (dollars)."""
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    err = p - t
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    shares = percentage_errors(t, p)
    return {
        "rmsle": rmsle(t, p),
        "mae": float(np.mean(np.abs(err))),
        "mape": float(np.mean(shares)),
        # The typical listing's error: unlike the mean, a few wild land prices do not move it.
        "mdape": float(np.median(shares)),
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan"),
    }


# How people name and read each metric: RMSLE and R² as plain numbers, errors in dollars and
# percentages of the price.
LABELS: dict[str, str] = {
    "rmsle": "RMSLE",
    "mae": "MAE",
    "mape": "MAPE",
    "mdape": "MdAPE",
    "r2": "R²",
}


def readable(name: str, value: float | None) -> str:
    """``value`` of metric ``name`` as people read it: "$182,408", "35.8%", "0.412"; "-" when
    there is none and "not finite" for NaN or infinity."""
    if value is None:
        return "-"
    if not np.isfinite(value):
        return "not finite"
    if name == "mae":
        return f"${value:,.0f}"
    if name in ("mape", "mdape"):
        return f"{value:.1%}"
    return f"{value:.3f}"
