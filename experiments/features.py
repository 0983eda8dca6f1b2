"""From raw listing fields to model features: one scikit-learn pipeline inside every logged model.

The served model takes the raw listing fields (the CLEAN frame's columns minus ``price``, in any
order, extra columns such as ``batch_id`` ignored, missing ones treated as unknown values), so
serving, the holdout comparison and SHAP all go through the same code.

Choices, measured with 5-fold CV of LightGBM / XGBoost on the cleaned 5k sample (RMSLE, lower
is better; differences under ~0.005 are noise):

- **Location is the main driver**, at several granularities. ``state``, ``status`` and the
  3-digit zip prefix are low-cardinality enough for native categorical splits (boosting) or
  one-hot (linear). Numeric-only features gave 0.80; adding native state and status 0.70;
  native state, status, city and zip3 0.665 / 0.651.
- **High-cardinality columns** (``city``, 5-digit ``zip_code``, ``brokered_by``) get a smoothed
  mean of log price per value, cross-fitted on the training rows so a row never sees its own
  price (:class:`SmoothedMeanEncoder`). Replacing native city by this encoding and adding the
  5-digit zip: 0.647 / 0.649. Encoding every location column this way instead of native
  categories was worse (0.671 / 0.667), in line with REALTOR.md. ``brokered_by`` was neutral on
  the sample (agencies are nearly unique there); it is kept because on the full data agencies
  have many listings and specialise by price band, and the smoothing shrinks rare ones to the
  prior. ``city`` is keyed by ``state|city`` because city names repeat across states.
- **Location price per square foot** (the smoothed mean of log(price / house_size) per zip3,
  zip and city; the published full-data models rely on it): 0.637 / 0.646.
- ``street`` is dropped: it is a near-unique address id, an identifier and not a feature.
- ``prev_sold_date`` becomes the (fractional) year of the previous sale; missing stays missing.

Families differ only in the encoding step (``Encoding``): boosting gets native categories
(CatBoost every text column as text, encoded by its own ordered target statistics);
forests get the encodings plus one-hot status (sklearn forests split on NaN natively);
linear models get log sizes, imputation with missing-value indicators, one-hot state and
status and standardised encodings. The target is log(price) (:func:`log_price_model`): prices
are log-normal and RMSLE is the primary metric, so squared error on the log scale optimises it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from experiments.inputs import SIZES, model_input

Encoding = Literal["native", "forest", "linear", "catboost"]

# Pseudo-rows of the smoothed means. Measured with XGBoost / ridge on the sample: 2 -> 0.641 /
# 0.701, 5 -> 0.643 / 0.704, 20 -> 0.645 / 0.712, 100 -> 0.649 / 0.722. Search spaces may tune it.
DEFAULT_SMOOTHING = 5.0

# What ListingFrame derives from them (``street`` is dropped on purpose, see the module doc).
NUMERIC = (*SIZES, "prev_sold_year")
LOW_CARDINALITY = ("status", "state", "zip_code_3")
HIGH_CARDINALITY = ("city", "zip_code", "brokered_by")
PER_SQFT_KEYS = ("zip_code_3", "zip_code", "city")
DERIVED_COLUMNS: tuple[str, ...] = (*NUMERIC, *LOW_CARDINALITY, *HIGH_CARDINALITY)
_DERIVED_SOURCE = {"prev_sold_year": "prev_sold_date", "zip_code_3": "zip_code"}


class ListingFrame(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn: untyped
    """Raw listing fields in, typed and derived columns (``DERIVED_COLUMNS``) out.

    Stateless. Takes what :func:`model_input` takes, so the fitted model serves fields in the
    shapes they arrive in, with missing or extra columns.
    """

    def fit(self, X: pd.DataFrame, y: object = None) -> ListingFrame:
        self._check(X)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        self._check(X)
        raw = model_input(X)
        dates = raw["prev_sold_date"]
        city = raw["city"].str.lower()
        out = pd.DataFrame(
            {
                **{c: raw[c] for c in SIZES},
                "prev_sold_year": (dates.dt.year + (dates.dt.dayofyear - 1) / 366.0).astype(
                    "float64"
                ),
                "status": raw["status"],
                "state": raw["state"],
                "zip_code_3": raw["zip_code"].str[:3],
                "city": (raw["state"].fillna("?") + "|" + city).where(city.notna()),
                "zip_code": raw["zip_code"],
                "brokered_by": raw["brokered_by"],
            },
            index=X.index,
        )
        # One missing-value marker for every text column (pd.NA and None confuse encoders).
        for col in (*LOW_CARDINALITY, *HIGH_CARDINALITY):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(DERIVED_COLUMNS, dtype=object)

    @staticmethod
    def _check(X: object) -> None:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"the model takes a pandas DataFrame of listings, got {type(X)}")


class SmoothedMeanEncoder(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn: untyped
    """Each column's value -> the smoothed mean of the (log) target over rows with that value.

    ``smoothing`` pseudo-rows at the overall mean pull rare values towards it. ``fit_transform``
    cross-fits (each training row is encoded by statistics of the other folds), so a model never
    learns from a row's own target; ``transform`` uses statistics of every fitted row. With
    ``size_column`` the target is log price per unit of that column (log price per square foot),
    estimated on rows where the size is known; the size column itself is not encoded.
    """

    def __init__(
        self, smoothing: float = DEFAULT_SMOOTHING, size_column: str | None = None, folds: int = 5
    ) -> None:
        self.smoothing = smoothing
        self.size_column = size_column
        self.folds = folds

    def fit(self, X: pd.DataFrame, y: object) -> SmoothedMeanEncoder:
        keys, target = self._keys_and_target(X, y)
        everything = np.ones(len(target), dtype=bool)
        self.prior_ = self._prior(target, everything)
        self.means_ = {}
        for col in keys.columns:
            codes, values = pd.factorize(keys[col])
            sums, counts = self._sums(codes, target, everything, len(values))
            seen = counts > 0
            means = (sums + self.smoothing * self.prior_) / (counts + self.smoothing)
            self.means_[col] = pd.Series(means[seen], index=values[seen])
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def fit_transform(self, X: pd.DataFrame, y: object = None, **_: object) -> pd.DataFrame:
        self.fit(X, y)
        keys, target = self._keys_and_target(X, y)
        out = pd.DataFrame(index=X.index, columns=keys.columns, dtype="float64")
        splits = KFold(n_splits=min(self.folds, len(keys)), shuffle=True, random_state=0)
        for col in keys.columns:
            # Integer codes and bincount: the folds' statistics in a few array passes.
            codes, values = pd.factorize(keys[col])
            encoded = np.empty(len(codes))
            for fit_rows, encode_rows in splits.split(codes):
                use = np.zeros(len(codes), dtype=bool)
                use[fit_rows] = True
                prior = self._prior(target, use)
                sums, counts = self._sums(codes, target, use, len(values))
                with np.errstate(invalid="ignore", divide="ignore"):
                    means = (sums + self.smoothing * prior) / (counts + self.smoothing)
                means = np.where(counts + self.smoothing > 0, means, prior)
                rows = codes[encode_rows]
                encoded[encode_rows] = np.where(rows >= 0, means[rows], prior)
            out[col] = encoded
        return out

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        keys = X.loc[:, self._key_columns(X)]
        return pd.DataFrame(
            {
                c: keys[c].map(self.means_[c]).astype("float64").fillna(self.prior_)
                for c in keys.columns
            },
            index=keys.index,
        )

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(
            [c for c in self.feature_names_in_ if c != self.size_column], dtype=object
        )

    def _key_columns(self, X: pd.DataFrame) -> list[str]:  # every column but the size
        return [c for c in X.columns if c != self.size_column]

    def _keys_and_target(self, X: pd.DataFrame, y: object) -> tuple[pd.DataFrame, np.ndarray]:
        if y is None:
            raise ValueError("SmoothedMeanEncoder needs the target to fit")
        target = np.asarray(y, dtype="float64").ravel()
        if self.size_column is not None:
            size = pd.to_numeric(X[self.size_column], errors="coerce").to_numpy(dtype="float64")
            with np.errstate(divide="ignore", invalid="ignore"):
                target = np.where(size > 0, target - np.log(size), np.nan)
        return X.loc[:, self._key_columns(X)], target

    @staticmethod
    def _prior(target: np.ndarray, use: np.ndarray) -> float:
        known = use & ~np.isnan(target)
        return float(target[known].mean()) if known.any() else 0.0

    @staticmethod
    def _sums(
        codes: np.ndarray, target: np.ndarray, use: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per category code: sum and count of the known targets of the ``use`` rows."""
        rows = use & (codes >= 0) & ~np.isnan(target)
        sums = np.bincount(codes[rows], weights=target[rows], minlength=n)
        counts = np.bincount(codes[rows], minlength=n).astype("float64")
        return sums, counts


class CategoryCodes(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn: untyped
    """Text columns -> pandas categoricals with the categories fixed at fit time.

    LightGBM and XGBoost split natively on pandas categoricals; fixing the categories keeps the
    codes identical between training and serving. Values seen fewer than ``min_count`` times in
    training, and values never seen, become missing (boosters route missing values learnedly).
    """

    def __init__(self, min_count: int = 5) -> None:
        self.min_count = min_count

    def fit(self, X: pd.DataFrame, y: object = None) -> CategoryCodes:
        self.categories_ = {}
        for col in X.columns:
            counts = X[col].value_counts(dropna=True)
            self.categories_[col] = sorted(str(v) for v in counts[counts >= self.min_count].index)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                col: pd.Categorical(X[col], categories=self.categories_[col])
                for col in self.feature_names_in_
            },
            index=X.index,
        )

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(self.feature_names_in_, dtype=object)


MISSING = "\x00missing"  # CategoryText's missing value: no validated listing sends it
CATBOOST_TEXT = "category"  # the name of CategoryText's step in the "catboost" encoding


class CategoryText(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn: untyped
    """Text columns as text for CatBoost's own categorical features, missing as ``MISSING``.

    CatBoost encodes categories itself, by ordered target statistics (each training row encoded
    by the rows before it in a random order, so none sees its own price, and rare values pulled
    to a prior): no value is dropped here, however rare. It refuses None in a categorical
    feature, hence the marker. ``categories_`` keeps every value seen in training: the scoring
    artifact (experiments.scoring.catboost) tabulates what the model does with each.
    """

    def fit(self, X: pd.DataFrame, y: object = None) -> CategoryText:
        self.categories_ = {col: sorted(str(v) for v in X[col].dropna().unique()) for col in X}
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                col: X[col].astype(object).where(X[col].notna(), MISSING).astype(str)
                for col in self.feature_names_in_
            },
            index=X.index,
        )

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(self.feature_names_in_, dtype=object)


def _encodings(smoothing: float) -> list[tuple[str, TransformerMixin, list[str]]]:
    return [
        ("price", SmoothedMeanEncoder(smoothing), list(HIGH_CARDINALITY)),
        (
            "ppsf",
            SmoothedMeanEncoder(smoothing, size_column="house_size"),
            [*PER_SQFT_KEYS, "house_size"],
        ),
    ]


def encoder(encoding: Encoding, smoothing: float = DEFAULT_SMOOTHING) -> ColumnTransformer:
    """The family-specific encoding step (see the module doc for why each differs)."""
    if encoding == "native":
        steps = [
            ("numeric", "passthrough", list(NUMERIC)),
            ("category", CategoryCodes(), list(LOW_CARDINALITY)),
            *_encodings(smoothing),
        ]
    elif encoding == "catboost":
        # Every text column native (CatBoost's target statistics replace the smoothed means of
        # log price); log price per square foot is not a statistic CatBoost computes: kept.
        steps = [
            ("numeric", "passthrough", list(NUMERIC)),
            (CATBOOST_TEXT, CategoryText(), [*LOW_CARDINALITY, *HIGH_CARDINALITY]),
            _encodings(smoothing)[1],
        ]
    elif encoding == "forest":
        steps = [
            ("numeric", "passthrough", list(NUMERIC)),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["status"]),
            ("location", SmoothedMeanEncoder(smoothing), ["state", "zip_code_3"]),
            *_encodings(smoothing),
        ]
    elif encoding == "linear":
        log_sizes = FunctionTransformer(np.log1p, feature_names_out="one-to-one")
        impute = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        steps = [
            ("numeric", make_pipeline(impute, StandardScaler()), ["bed", "bath", "prev_sold_year"]),
            (
                "size",
                make_pipeline(log_sizes, impute, StandardScaler()),
                ["acre_lot", "house_size"],
            ),
            (
                "onehot",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist", min_frequency=5, sparse_output=False
                ),
                ["status", "state"],
            ),
            *[
                (name, make_pipeline(step, StandardScaler()), cols)
                for name, step, cols in [
                    ("location", SmoothedMeanEncoder(smoothing), ["zip_code_3"]),
                    *_encodings(smoothing),
                ]
            ],
        ]
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    return ColumnTransformer(steps, remainder="drop").set_output(transform="pandas")


def log_price_model(
    estimator: RegressorMixin, encoding: Encoding, smoothing: float = DEFAULT_SMOOTHING
) -> TransformedTargetRegressor:
    """The whole model: raw fields -> features -> ``estimator`` on log(price) -> price."""
    pipeline = Pipeline(
        [
            ("listing", ListingFrame()),
            ("encode", encoder(encoding, smoothing)),
            ("model", estimator),
        ]
    )
    return TransformedTargetRegressor(
        regressor=pipeline, func=np.log, inverse_func=np.exp, check_inverse=False
    )


def feature_source(feature: str) -> str:
    """The raw input column an encoded feature comes from (``ppsf__zip_code_3`` -> zip_code).

    Encoded names are ``<step>__<derived column>[_<category>]``; SHAP values are summed per raw
    column so importances compare across families whose encodings differ.
    """
    name = feature.split("__", 1)[-1].removeprefix("missingindicator_")
    matches = [c for c in DERIVED_COLUMNS if name == c or name.startswith(c + "_")]
    if not matches:
        raise ValueError(f"cannot tell which input column feature {feature!r} comes from")
    derived = max(matches, key=len)
    return _DERIVED_SOURCE.get(derived, derived)
