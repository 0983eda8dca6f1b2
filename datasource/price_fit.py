"""The price model behind the generator, fitted to a sample of the realtor CSV.

Log price is a ridge-shrunk linear model (centred features with capped room counts, status,
state effects with each state's own size slope), fitted on the complete rows; then, term by
term on what each fit leaves: land's own lot-size slopes and share of the state level, land's
state levels, kind offsets, terms no linear model represents with a tree of their remainder,
and city effects with the listing noise and its tails. :func:`fit_prices` returns the figures
:mod:`datasource.calibrate` stores and draws the world's locations from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeRegressor

from datasource.world import (
    NONLINEAR_TERMS,
    STRUCTURE,
    eval_tree,
    land_acre_basis,
    nonlinear_basis,
    tree_features,
)
from tasador.core.columns import STATUSES

# Every state value of the full Kaggle file: 50 states, DC and three territories.
US_STATES: tuple[str, ...] = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut",
    "Delaware", "District of Columbia", "Florida", "Georgia", "Guam", "Hawaii", "Idaho",
    "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana", "Maine", "Maryland",
    "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska",
    "Nevada", "New Hampshire", "New Jersey", "New Mexico", "New York", "North Carolina",
    "North Dakota", "Ohio", "Oklahoma", "Oregon", "Pennsylvania", "Puerto Rico", "Rhode Island",
    "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah", "Vermont", "Virgin Islands",
    "Virginia", "Washington", "West Virginia", "Wisconsin", "Wyoming",
)  # fmt: skip

# Kinds (see world.STRUCTURE) with fewer rows fold into "other"; land with fewer rows gets no
# terms of its own.
MIN_KIND_ROWS = 10
# Within-city price variation by zip code, which a 5k sample cannot measure (log scale); the
# listing-level noise is what remains of the within-city variance.
ZIP_SD = 0.15
# Each state's own price elasticity of house size (a random slope around the common one): a
# pseudo-row penalty on the per-state deviations, about sigma^2 / tau^2 measured on the sample's
# houses (slopes from 0.56 to 1.45 across the 21 states with 40+ houses; within-state sd ~0.45).
SIZE_SLOPE_PENALTY = 5.0
# Candidate caps of the bedroom and bathroom counts' price effect (12: no cap in practice).
ROOM_CAPS = (3, 4, 5, 6, 8, 12)
# Where a house's lot stops adding to its price at the common slope (log acres: 1 acre). On the
# sample, houses on bigger lots gain far less per doubling than the slope below fits.
HOUSE_ACRE_KNEE = 0.0
# Where a house's size stops paying at the common elasticity: 4,000 sq ft, as log sq ft above
# the sample's mean (the price fit's centre).
SIZE_KNEE_SQFT = 4_000.0
# Pseudo-rows of land's own state price levels (a state with 10 plots keeps half its mean).
LAND_STATE_K = 10.0
# Kinds with fewer rows take the houses' noise tails.
MIN_TAIL_ROWS = 100
# The terms of NONLINEAR_TERMS that read the location level.
LOCATION_TERMS = ("location_sq", "size_by_location")
# The residual tree: how many leaves, and the fewest sample rows a leaf may average.
TREE_LEAVES = 24
TREE_MIN_LEAF = 50


@dataclass(frozen=True)
class PriceFit:
    """The fitted price model: what the calibration stores and what its location draws need."""

    price: dict[str, Any]  # the linear fit: intercept, betas, centre, status, state, size slopes
    acre_unbuilt: np.ndarray  # land's extra lot-size slopes below and above the knee
    unbuilt_location: float  # the share of the state level land carries
    kind_stats: pd.DataFrame  # by kind: n, mean (price offset), noise_sd, noise_df
    land_state: pd.Series  # land's own level by state
    nonlinear: dict[str, Any]  # world.NONLINEAR_TERMS' knees and coefficients, residual tree
    city_stats: pd.DataFrame  # by "state|city": shrunk mean and posterior sd of its effect
    tau2: float  # variance of city effects
    noise_sd: float  # the listing noise (log scale), zip codes' share taken out
    house_df: float | None  # its Student-t degrees of freedom for houses (None: Gaussian)


def fit_prices(sample: pd.DataFrame, complete: pd.DataFrame) -> PriceFit:
    """The price model of ``sample`` (its rows of US_STATES, with their kind), fitted first on
    its ``complete`` rows, then term by term on what each fit leaves of the log price."""
    price = _fit_price(complete)
    priced = sample[sample["price"] > 1_000].copy()
    base = (
        price["intercept"]
        + priced["state"].map(price["state"]).to_numpy()
        + priced["status"].map(price["status"]).fillna(0).to_numpy()
        + _feature_terms(priced, price)
    )
    priced["resid"] = np.log(priced["price"].to_numpy()) - base
    acre_unbuilt = _acre_unbuilt(priced, price)
    land = (priced["house_size"].isna() & priced["acre_lot"].notna()).to_numpy()
    land_terms = land_acre_basis(features(priced)["log_acre"].to_numpy(float)) @ acre_unbuilt
    priced["resid"] -= np.where(land, land_terms, 0.0)
    unbuilt_location = _unbuilt_location(priced, price)
    unbuilt_state = priced["state"].map(price["state"]).where(priced["house_size"].isna())
    priced["resid"] -= ((unbuilt_location - 1) * unbuilt_state).fillna(0)
    # Land has price levels of its own by state, beyond the share of the houses' level it
    # carries: shrunk means of its residual per state.
    unbuilt = priced["house_size"].isna()
    land_state = _shrunk_means(
        priced.loc[unbuilt, "resid"], priced.loc[unbuilt, "state"], k=LAND_STATE_K
    )
    land_state["mean"] -= land_state["mean"].mean()
    priced["resid"] -= priced["state"].map(land_state["mean"]).where(unbuilt).fillna(0)
    kind_stats = _shrunk_means(priced["resid"], priced["kind"], k=5.0)
    priced["resid"] -= priced["kind"].map(kind_stats["mean"])
    nonlinear, fitted = _fit_nonlinear(priced, price, unbuilt_location)
    # The noise is what the terms of the listing's own features leave. The location terms vary
    # between places, not within a city, so they do not come off the within-city noise.
    priced["resid"] -= fitted
    city_stats, tau2, sigma2 = _city_effects(priced.dropna(subset=["city", *STRUCTURE]))
    noise_sd = float(np.sqrt(max(sigma2 - ZIP_SD**2, 0.01)))
    kind_stats["noise_sd"] = np.sqrt(
        (priced.groupby("kind")["resid"].var() - tau2 - ZIP_SD**2).clip(lower=0.01)
    )
    kind_stats.loc["0000", "noise_sd"] = noise_sd
    # Tails by kind: houses' noise is heavy-tailed, land's is not (excess kurtosis 0.7).
    house_df = _tail_df(price["kurtosis"], price["resid_var"], noise_sd**2)
    grouped = priced.groupby("kind")["resid"]
    kind_stats["noise_df"] = [
        _tail_df(grouped.get_group(k).kurtosis(), grouped.get_group(k).var(), sd**2)
        if kind != "0000" and n >= MIN_TAIL_ROWS
        else house_df
        for k, kind, n, sd in zip(
            kind_stats.index, kind_stats.index, kind_stats["n"], kind_stats["noise_sd"], strict=True
        )
    ]
    return PriceFit(
        price=price,
        acre_unbuilt=acre_unbuilt,
        unbuilt_location=unbuilt_location,
        kind_stats=kind_stats,
        land_state=land_state["mean"],
        nonlinear=nonlinear,
        city_stats=city_stats,
        tau2=tau2,
        noise_sd=noise_sd,
        house_df=house_df,
    )


def _fit_price(complete: pd.DataFrame) -> dict[str, Any]:
    """The price fit with the bedroom and bathroom caps that explain the sample best.

    Past a few rooms more rooms stop adding to the price (large multi-unit buildings list
    dozens of bathrooms), so their effect saturates at a cap chosen here by least squares.
    """
    fits = [
        _fit_price_capped(complete, {"bed": bed, "bath": bath})
        for bed in ROOM_CAPS
        for bath in ROOM_CAPS
    ]
    return min(fits, key=lambda fit: fit["sse"])


def _fit_price_capped(complete: pd.DataFrame, caps: dict[str, float]) -> dict[str, Any]:
    """Log price on centred features, status and ridge-shrunk state effects (complete rows),
    with each state's own size slope."""
    y = np.log(complete["price"].to_numpy())
    feats = features(complete, caps)
    centre = feats.mean()
    X = (feats - centre).to_numpy()
    status = pd.get_dummies(complete["status"]).reindex(columns=list(STATUSES), fill_value=0)
    state = pd.get_dummies(complete["state"]).reindex(columns=list(US_STATES), fill_value=0)
    dummies = state.to_numpy(float)
    size_by_state = dummies * X[:, [list(feats.columns).index("log_size")]]
    design = np.column_stack(
        [np.ones(len(y)), X, status.to_numpy(float)[:, 1:], dummies, size_by_state]
    )
    n_fixed = 1 + X.shape[1] + len(STATUSES) - 1
    n_states = len(US_STATES)
    penalty = np.zeros(design.shape[1])
    penalty[1 + X.shape[1] : n_fixed] = 1.0  # a status absent from complete rows stays at 0
    penalty[n_fixed : n_fixed + n_states] = 8.0  # a state in ~8 complete rows keeps half its mean
    penalty[n_fixed + n_states :] = SIZE_SLOPE_PENALTY
    coef = np.linalg.solve(design.T @ design + np.diag(penalty), design.T @ y)
    resid = y - design @ coef
    betas = dict(zip(feats.columns, coef[1 : 1 + X.shape[1]], strict=True))
    status_effect = {"for_sale": 0.0}
    status_effect.update(dict(zip(STATUSES[1:], coef[1 + X.shape[1] : n_fixed], strict=True)))
    state_effect = dict(zip(US_STATES, coef[n_fixed : n_fixed + n_states], strict=True))
    slopes = coef[n_fixed + n_states :]
    seen = dummies.sum(axis=0) > 0
    return {
        "caps": caps,
        "sse": float(resid @ resid),
        "size_slope": dict(zip(US_STATES, slopes, strict=True)),
        # spread of the slopes of states seen, for those not seen (drawn once in _states)
        "size_slope_sd": float(slopes[seen].std()),
        "kurtosis": float(pd.Series(resid).kurtosis()),
        "resid_var": float(resid.var()),
        "intercept": float(coef[0]),
        "betas": {k: float(v) for k, v in betas.items()},
        "centre": {k: float(v) for k, v in centre.items()},
        "status": {k: float(v) for k, v in status_effect.items()},
        "state": {k: float(v) for k, v in state_effect.items()},
    }


def features(frame: pd.DataFrame, caps: dict[str, float] | None = None) -> pd.DataFrame:
    """The price model's features; bedrooms and bathrooms count up to their ``caps``."""
    caps = caps or {"bed": 12, "bath": 12}
    return pd.DataFrame(
        {
            "log_size": np.log(frame["house_size"].clip(lower=100)),
            "bed": frame["bed"].clip(upper=caps["bed"]),
            "bath": frame["bath"].clip(upper=caps["bath"]),
            "log_acre": np.log(frame["acre_lot"].clip(lower=0.01)),
        }
    )


def _feature_terms(frame: pd.DataFrame, price: dict[str, Any]) -> np.ndarray:
    """Sum of centred feature effects (with the state's own size slope); a missing feature
    contributes nothing."""
    feats = features(frame, price["caps"])
    total = np.zeros(len(frame))
    for name, beta in price["betas"].items():
        total += (beta * (feats[name] - price["centre"][name])).fillna(0).to_numpy()
    own_slope = frame["state"].map(price["size_slope"]).fillna(0)
    total += (own_slope * (feats["log_size"] - price["centre"]["log_size"])).fillna(0).to_numpy()
    return total


def _fit_nonlinear(
    priced: pd.DataFrame, price: dict[str, Any], unbuilt_location: float
) -> tuple[dict[str, Any], pd.Series]:
    """Coefficients of the price terms a linear model cannot represent (world.NONLINEAR_TERMS)
    and a tree of what they leave, by least squares on the residual, and the part of the
    residual that the listing's own features explain (terms but the location ones, tree).

    A row's location level is its state's effect plus its city's shrunk mean residual without
    the row itself (a row's own price must not define its location).
    """
    rows = priced.dropna(subset=["city"])
    _, tau2, sigma2 = _city_effects(rows.dropna(subset=list(STRUCTURE)))
    key = rows["state"] + "|" + rows["city"]
    grouped = rows.groupby(key)["resid"]
    sums, counts = key.map(grouped.sum()), key.map(grouped.size())
    city_loo = (sums - rows["resid"]) / (counts - 1 + sigma2 / tau2)
    no_size = rows["house_size"].isna().to_numpy()
    location = (rows["state"].map(price["state"]) + city_loo).to_numpy(float, copy=True)
    location *= np.where(no_size, unbuilt_location, 1.0)
    feats = features(rows)
    nonlinear: dict[str, Any] = {
        "acre_knee": HOUSE_ACRE_KNEE,
        "size_knee": round(float(np.log(SIZE_KNEE_SQFT) - price["centre"]["log_size"]), 4),
        "location_sq_centre": round(float(np.mean(location**2)), 4),
    }
    basis = nonlinear_basis(
        location,
        (feats["log_size"] - price["centre"]["log_size"]).to_numpy(float),
        feats["log_acre"].to_numpy(float),
        ~no_size,
        rows["acre_lot"].notna().to_numpy(),
        nonlinear,
    )
    design = np.column_stack([np.ones(len(rows)), basis])
    coef, *_ = np.linalg.lstsq(design, rows["resid"].to_numpy(float), rcond=None)
    nonlinear["coef"] = {
        name: round(float(c), 4) for name, c in zip(NONLINEAR_TERMS, coef[1:], strict=True)
    }
    coef = np.array([nonlinear["coef"][name] for name in NONLINEAR_TERMS])
    explained = basis @ coef
    # The terms of the listing's own features (not of its location, which reads other rows).
    own = [name not in LOCATION_TERMS for name in NONLINEAR_TERMS]
    own_terms = basis[:, own] @ coef[own]
    X = tree_features(
        feats["log_size"].to_numpy(float),
        feats["log_acre"].to_numpy(float),
        rows["bed"].to_numpy(float),
        rows["bath"].to_numpy(float),
        rows["status"].map({s: i for i, s in enumerate(STATUSES)}).to_numpy(float),
    )
    nonlinear["tree"] = residual_tree(X, rows["resid"].to_numpy(float) - explained)
    fitted = pd.Series(0.0, index=priced.index)
    fitted[rows.index] = own_terms + eval_tree(nonlinear["tree"], X)
    return nonlinear, fitted


def residual_tree(X: np.ndarray, resid: np.ndarray) -> dict[str, Any]:
    """A small regression tree of what the terms above leave (thresholds and interactions of
    the listing's features: room counts in small houses, dear houses on big lots ...), leaves
    of at least TREE_MIN_LEAF rows (figures, not rows), as arrays for world.eval_tree."""
    tree = DecisionTreeRegressor(
        max_leaf_nodes=TREE_LEAVES, min_samples_leaf=TREE_MIN_LEAF, random_state=0
    ).fit(X, resid - resid.mean())
    t = tree.tree_
    return {
        "depth": int(tree.get_depth()),
        "feature": [int(f) for f in t.feature],
        "threshold": [round(float(v), 4) for v in t.threshold],
        "left": [int(c) for c in t.children_left],
        "right": [int(c) for c in t.children_right],
        "value": [round(float(v), 4) for v in t.value[:, 0, 0]],
    }


def _acre_unbuilt(priced: pd.DataFrame, price: dict[str, Any]) -> np.ndarray:
    """How much more the lot's size moves the price of a listing without a house (land), below
    and above world.LAND_ACRE_KNEE: slopes of the residual on log lot size there, beyond the
    houses' common slope (least squares)."""
    rows = priced[priced["house_size"].isna() & priced["acre_lot"].notna()]
    if len(rows) < MIN_KIND_ROWS:
        return np.zeros(2)
    basis = land_acre_basis(features(rows)["log_acre"].to_numpy(float))
    design = np.column_stack([np.ones(len(rows)), basis])
    coef, *_ = np.linalg.lstsq(design, rows["resid"].to_numpy(float), rcond=None)
    return cast(np.ndarray, coef[1:])


def _unbuilt_location(priced: pd.DataFrame, price: dict[str, Any]) -> float:
    """How much of a state's price level a listing without a house carries (1: all of it):
    land prices vary less from state to state than house prices do."""
    rows = priced[priced["house_size"].isna()]
    if len(rows) < MIN_KIND_ROWS:
        return 1.0
    x = rows["state"].map(price["state"]).to_numpy()
    x = x - x.mean()
    r = (rows["resid"] - rows["resid"].mean()).to_numpy()
    return float(np.clip(1 + x @ r / (x @ x), 0.0, 1.5))


def _tail_df(kurtosis: float, total_var: float, noise_var: float) -> float | None:
    """Degrees of freedom of the Student-t listing noise with the residuals' heavy tails.

    The residual mixes Gaussian-like location effects with the listing noise, so the noise
    alone has the excess kurtosis scaled up by (total / noise variance)^2; a t with df has
    6 / (df - 4). None (Gaussian) when the tails are not heavy.
    """
    excess = kurtosis * (total_var / noise_var) ** 2
    if excess <= 0.2:
        return None
    return round(float(np.clip(4 + 6 / excess, 4.5, 30.0)), 2)


def _city_effects(rows: pd.DataFrame) -> tuple[pd.DataFrame, float, float]:
    """Shrunk city means of the residual, their posterior sd, and the variance components.

    Complete rows only (other kinds are noisier); the within-city variance comes from cities
    seen at least twice.
    """
    city_key = rows["state"] + "|" + rows["city"]
    grouped = rows.groupby(city_key)["resid"]
    sizes = grouped.size()
    sigma2 = float((grouped.var() * (sizes - 1)).sum() / (sizes[sizes > 1] - 1).sum())
    tau2 = max(float(rows["resid"].var()) - sigma2, 0.01)
    k_city = sigma2 / tau2
    stats = _shrunk_means(rows["resid"], city_key, k=k_city)
    stats["sd"] = np.sqrt(tau2 * k_city / (stats["n"] + k_city))
    return stats, tau2, sigma2


def _shrunk_means(values: pd.Series, keys: pd.Series, k: float) -> pd.DataFrame:
    grouped = values.groupby(keys)
    stats = pd.DataFrame({"n": grouped.size(), "sum": grouped.sum()})
    stats["mean"] = stats["sum"] / (stats["n"] + k)
    return stats
