"""Models that misbehave on purpose, importable so MLflow pickles them by reference."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin


class NaNRegressor(RegressorMixin, BaseEstimator):
    """Predicts NaN for every row (as a model trained on broken data may); ``inf_rows``: those
    row positions get +infinity instead."""

    def __init__(self, inf_rows: tuple[int, ...] = ()) -> None:
        self.inf_rows = inf_rows

    def fit(self, features: Any, target: Any) -> NaNRegressor:
        """Nothing to learn."""
        self.fitted_ = True
        return self

    def predict(self, features: Any) -> np.ndarray:
        """NaN (or inf at ``inf_rows``) per row."""
        prices = np.full(len(features), np.nan)
        for row in self.inf_rows:
            if row < len(prices):
                prices[row] = np.inf
        return prices
