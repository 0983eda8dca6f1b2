"""Small real models of the training code, fitted quickly for tests about scoring."""

from __future__ import annotations

from typing import Any

import pandas as pd

from experiments.families import build_model
from experiments.spaces import load_spaces
from tasador.core.columns import TARGET


def fit(family: str, frame: pd.DataFrame, **params: Any) -> Any:
    model = build_model(family, params, n_jobs=1, seed=0)
    return model.fit(frame.drop(columns=[TARGET]), frame[TARGET].to_numpy())


# Every family the search spaces define: a family added there is tested here without an edit.
FAMILY_NAMES = sorted(load_spaces())
SMALL_PARAMS: dict[str, dict[str, Any]] = {  # tiny budgets: the tests are about scoring
    "xgboost": {"n_estimators": 30, "max_depth": 4},
    "lightgbm": {"n_estimators": 30, "num_leaves": 8},
    "random_forest": {"n_estimators": 20, "min_samples_leaf": 3},
    "ridge": {"alpha": 1.0},
    "catboost": {"iterations": 30, "depth": 4},
}


def small_model(family: str, frame: pd.DataFrame) -> Any:
    """A small fitted model of ``family`` (the estimator's defaults for a family not listed)."""
    return fit(family, frame, **SMALL_PARAMS.get(family, {}))


# Bigger budgets: the feature and explanation tests check what the models learn.
SMALL = {
    "xgboost": {"n_estimators": 60, "max_depth": 4},
    "lightgbm": {"n_estimators": 60, "num_leaves": 15},
    "random_forest": {"n_estimators": 20, "min_samples_leaf": 3},
    "ridge": {"alpha": 1.0},
    "catboost": {"iterations": 60, "depth": 4},
}
