"""Deliberately broken price models, importable so the registry pickles them by reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin


class NaNPrices(RegressorMixin, BaseEstimator):
    """Fits nothing and prices every listing NaN: the model a broken pipeline produces."""

    def fit(self, X: pd.DataFrame, y: Any = None) -> NaNPrices:
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), np.nan)
