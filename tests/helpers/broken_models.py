"""Models and scorers that misbehave on purpose, importable so MLflow pickles them by reference.

A registered :class:`NaNRegressor` has no scoring artifact (it is not one of our pipelines), so
serving refuses it; :class:`NaNScorer` is the same misbehaviour as a scorer served in memory."""

from __future__ import annotations

from pathlib import Path
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


class NaNScorer:
    """A served scorer (``serving.fast_path.FastScorer``'s interface, no artifact to explain)
    pricing as :class:`NaNRegressor` does, on validated listings."""

    artifact = None

    def __init__(
        self, inf_rows: tuple[int, ...] = (), only_for: dict[str, float] | None = None
    ) -> None:
        self.inf_rows = inf_rows
        self.only_for = only_for

    def predict(self, listings: Any) -> np.ndarray:
        prices = np.full(len(listings), np.nan)
        for row in self.inf_rows:
            if row < len(prices):
                prices[row] = np.inf
        for i, listing in enumerate(listings):
            if self.only_for and any(
                getattr(listing, column) != value for column, value in self.only_for.items()
            ):
                prices[i] = 200_000.0
        return prices


class PickleTrap:
    """Creates ``path`` when unpickled: code an attacker with write access to the artifact store
    could put in a model's pickle, made harmless and visible."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return Path.touch, (self.path,)
