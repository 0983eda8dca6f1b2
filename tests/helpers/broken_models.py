"""Models that misbehave on purpose, importable so MLflow pickles them by reference."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone


class NaNRegressor(RegressorMixin, BaseEstimator):
    """Predicts NaN for every row (as a model trained on broken data may); ``inf_rows``: those
    row positions get +infinity instead. With ``only_for`` ({column: value}), only rows that
    match every pair are broken and the others get a finite price: a model that passes the
    validation of a swap and fails on some live listings."""

    def __init__(
        self, inf_rows: tuple[int, ...] = (), only_for: dict[str, float] | None = None
    ) -> None:
        self.inf_rows = inf_rows
        self.only_for = only_for

    def fit(self, features: Any, target: Any) -> NaNRegressor:
        """Nothing to learn."""
        self.fitted_ = True
        return self

    def predict(self, features: Any) -> np.ndarray:
        """NaN (or inf at ``inf_rows``) per broken row, 200,000 for the others."""
        prices = np.full(len(features), np.nan)
        for row in self.inf_rows:
            if row < len(prices):
                prices[row] = np.inf
        if self.only_for:
            broken = np.ones(len(features), dtype=bool)
            for column, value in self.only_for.items():
                broken &= np.asarray(features[column], dtype=float) == value
            prices[~broken] = 200_000.0
        return prices


class Skewed(RegressorMixin, BaseEstimator):
    """``estimator`` fitted as usual, its prices times ``factor``, and for listings of ``state``
    times ``state_factor`` instead: a model worse everywhere by a set share, or better than
    such a one on average and much worse for one state."""

    def __init__(
        self,
        estimator: Any = None,
        factor: float = 1.0,
        state: str | None = None,
        state_factor: float = 1.0,
    ) -> None:
        self.estimator = estimator
        self.factor = factor
        self.state = state
        self.state_factor = state_factor

    def fit(self, features: Any, target: Any) -> Skewed:
        self.estimator_ = clone(self.estimator).fit(features, target)
        return self

    def predict(self, features: Any) -> np.ndarray:
        prices = np.asarray(self.estimator_.predict(features), dtype=float)
        off = features["state"].eq(self.state).fillna(False).to_numpy(dtype=bool)
        return prices * np.where(off, self.state_factor, self.factor)
