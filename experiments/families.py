"""Model families: which estimator and which feature encoding each search-space family means.

Search spaces (``search_spaces/*.yaml``) hold the hyperparameter ranges as data; this registry
holds what must be code: the estimator class, the encoding it needs (see experiments.features)
and how threads and seeds are passed. Every estimator runs single-threaded by default because
parallelism comes from the number of search workers, one trial per core.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import catboost
import lightgbm as lgb
import xgboost as xgb
from sklearn.base import RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge

from experiments.features import (
    CATBOOST_TEXT,
    DEFAULT_SMOOTHING,
    HIGH_CARDINALITY,
    LOW_CARDINALITY,
    Encoding,
    log_price_model,
)
from tasador.core.errors import BadInput


@dataclass(frozen=True)
class Family:
    """A model family: its estimator class, feature encoding and runtime keyword arguments."""

    name: str
    estimator: type[RegressorMixin]
    encoding: Encoding
    # Fixed keyword arguments from (n_jobs, seed); parameters the search must not override.
    runtime: Callable[[int, int], dict[str, Any]]


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "xgboost",
            xgb.XGBRegressor,
            "native",
            lambda n_jobs, seed: {
                "n_jobs": n_jobs,
                "random_state": seed,
                "enable_categorical": True,
                "tree_method": "hist",
            },
        ),
        Family(
            "lightgbm",
            lgb.LGBMRegressor,
            "native",
            lambda n_jobs, seed: {"n_jobs": n_jobs, "random_state": seed, "verbosity": -1},
        ),
        Family(
            "random_forest",
            RandomForestRegressor,
            "forest",
            lambda n_jobs, seed: {"n_jobs": n_jobs, "random_state": seed},
        ),
        Family("ridge", Ridge, "linear", lambda n_jobs, seed: {}),
        Family(
            "catboost",
            catboost.CatBoostRegressor,
            "catboost",
            lambda n_jobs, seed: {
                "thread_count": n_jobs,
                "random_seed": seed,
                # A tuple: scikit-learn's clone checks it gets the very object back, and
                # CatBoost copies a list.
                "cat_features": tuple(
                    f"{CATBOOST_TEXT}__{c}" for c in (*LOW_CARDINALITY, *HIGH_CARDINALITY)
                ),
                # Target statistics of one column each, never of combinations: the scoring
                # artifact tabulates each statistic per value of its column
                # (experiments.scoring.catboost); combinations would need the library to serve.
                "max_ctr_complexity": 1,
                "loss_function": "RMSE",
                "logging_level": "Silent",
                "allow_writing_files": False,  # else a catboost_info folder in the cwd
            },
        ),
    )
}


def family(name: str) -> Family:
    """The family named ``name``; raises BadInput for an unknown one."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise BadInput(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def estimator_parameters(name: str) -> set[str]:
    """The keyword arguments the family's estimator accepts (to validate search spaces)."""
    estimator = family(name).estimator
    if name == "catboost":  # its get_params lists only the parameters given
        return set(inspect.signature(estimator.__init__).parameters) - {"self", "kwargs"}
    names = set(estimator().get_params())
    if name == "lightgbm":
        # LGBMRegressor forwards booster parameters (cat_smooth, ...) through **kwargs; the
        # library's own table of parameter names is the authority on which exist.
        names |= set(lgb.basic._ConfigAliases._get_all_param_aliases())
    return names


def build_model(
    name: str,
    params: Mapping[str, Any],
    *,
    n_jobs: int = 1,
    seed: int = 0,
    smoothing: float = DEFAULT_SMOOTHING,
) -> TransformedTargetRegressor:
    """An unfitted model of family ``name`` with ``params``: raw listing fields in, price out."""
    fam = family(name)
    runtime = fam.runtime(n_jobs, seed)
    clash = set(params) & set(runtime)
    if clash:
        raise BadInput(f"{name}: parameters {sorted(clash)} are set by the platform")
    return log_price_model(fam.estimator(**params, **runtime), fam.encoding, smoothing)
