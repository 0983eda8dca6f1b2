"""The metric set, fixed in one place: RMSLE is primary; MAE, MAPE and R² on the price scale."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

PRIMARY = "rmsle"


def rmsle(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared log error; predictions below zero count as zero."""
    t = np.log1p(np.asarray(y_true, dtype=float))
    p = np.log1p(np.clip(np.asarray(y_pred, dtype=float), 0, None))
    return float(np.sqrt(np.mean((t - p) ** 2)))


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Every metric we report, on the original price scale (dollars)."""
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    err = p - t
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    return {
        "rmsle": rmsle(t, p),
        "mae": float(np.mean(np.abs(err))),
        "mape": float(np.mean(np.abs(err) / np.maximum(np.abs(t), 1.0))),
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan"),
    }
