"""Derive the generator's calibration (``calibration.json``) from a sample of the realtor CSV.

Run ``uv run python -m datasource.calibrate --csv ../shared/data/realtor-sample-5k.csv``.
The output holds figures, never rows: state and city frequencies, price effects of location,
feature relations, missingness and date histograms. Location effects that a 5k sample cannot
pin down (a city seen once, a zip code) are drawn once here from their posterior with a fixed
seed, so the generated "world" is the same for every run and every seed of the generator.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import NormalDist
from typing import Any, cast

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeRegressor

from datasource.world import (
    CALIBRATION_PATH,
    NONLINEAR_TERMS,
    SHAPE_LEVELS,
    STRUCTURE,
    eval_tree,
    land_acre_basis,
    nonlinear_basis,
    tree_features,
)
from tasador.core.columns import RAW_COLUMNS, STATUSES

WORLD_SEED = 20240101

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

# States too rare to appear in a small sample still need somewhere to put listings:
# a few real places with their zip codes (weight: the count they stand for).
FALLBACK_CITIES: dict[str, list[tuple[str, int]]] = {
    "Guam": [("Dededo", 96929), ("Tamuning", 96913), ("Hagatna", 96910)],
    "Virgin Islands": [("Christiansted", 820), ("Charlotte Amalie", 802)],
    "Vermont": [("Burlington", 5401), ("Rutland", 5701)],
    "Wyoming": [("Cheyenne", 82001), ("Casper", 82601)],
    "Alaska": [("Anchorage", 99501), ("Fairbanks", 99701)],
}
FALLBACK_WEIGHT = 0.5

# Kinds (see world.STRUCTURE) with fewer rows fold into "other".
MIN_KIND_ROWS = 10
# Within-city price variation by zip code, which a 5k sample cannot measure (log scale); the
# listing-level noise is what remains of the within-city variance.
ZIP_SD = 0.15
SYNTHETIC_ZIPS_PER_CITY = 2
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
# Kinds with fewer sizes (or lot sizes) than this draw them log-normal.
MIN_SHAPE_ROWS = 200
# Kinds with fewer rows take the houses' noise tails.
MIN_TAIL_ROWS = 100
# The terms of NONLINEAR_TERMS that read the location level.
LOCATION_TERMS = ("location_sq", "size_by_location")
# The residual tree: how many leaves, and the fewest sample rows a leaf may average.
TREE_LEAVES = 24
TREE_MIN_LEAF = 50
# Columns whose missingness is independent of the kind, with their own rates.
LOOSE_MISSING = ("brokered_by", "street", "city", "price")


def _kind(frame: pd.DataFrame) -> pd.Series:
    flags = frame[list(STRUCTURE)].isna().astype(int).astype(str)
    return flags.agg("".join, axis=1)


def _shrunk_means(values: pd.Series, keys: pd.Series, k: float) -> pd.DataFrame:
    grouped = values.groupby(keys)
    stats = pd.DataFrame({"n": grouped.size(), "sum": grouped.sum()})
    stats["mean"] = stats["sum"] / (stats["n"] + k)
    return stats


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
    feats = _features(complete, caps)
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


def _features(frame: pd.DataFrame, caps: dict[str, float] | None = None) -> pd.DataFrame:
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
    feats = _features(frame, price["caps"])
    total = np.zeros(len(frame))
    for name, beta in price["betas"].items():
        total += (beta * (feats[name] - price["centre"][name])).fillna(0).to_numpy()
    own_slope = frame["state"].map(price["size_slope"]).fillna(0)
    total += (own_slope * (feats["log_size"] - price["centre"]["log_size"])).fillna(0).to_numpy()
    return total


def _lognormal(values: pd.Series, lower: float) -> list[float]:
    logs = np.log(values.dropna().clip(lower=lower))
    return [round(float(logs.mean()), 4), round(float(logs.std()), 4)]


def _linear(y: pd.Series, x: pd.DataFrame) -> list[float]:
    design = np.column_stack([np.ones(len(x)), x.to_numpy(float)])
    coef, *_ = np.linalg.lstsq(design, y.to_numpy(float), rcond=None)
    resid = y.to_numpy(float) - design @ coef
    return [*(round(float(c), 4) for c in coef), round(float(resid.std()), 4)]


def calibrate(sample: pd.DataFrame) -> dict[str, Any]:
    """The generator's figures, derived from a sample of the realtor CSV."""
    sample = sample[sample["state"].isin(US_STATES)].copy()
    sample["kind"] = _kind(sample)
    kind_counts = sample["kind"].value_counts()
    major = set(kind_counts[kind_counts >= MIN_KIND_ROWS].index)
    sample["kind"] = sample["kind"].where(sample["kind"].isin(major), "other")

    complete = sample.dropna(subset=[*STRUCTURE, "price", "status", "state"])
    complete = complete[complete["price"] > 1_000]
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
    land_terms = land_acre_basis(_features(priced)["log_acre"].to_numpy(float)) @ acre_unbuilt
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

    feats = _features(complete)  # uncapped: how many rooms a house of a size has
    bed = complete["bed"].clip(upper=12)
    return {
        "source": f"{len(sample)} rows of the realtor CSV; figures only",
        "world_seed": WORLD_SEED,
        "price": {
            "intercept": round(price["intercept"], 4),
            "betas": {k: round(v, 4) for k, v in price["betas"].items()},
            "centre": {k: round(v, 4) for k, v in price["centre"].items()},
            "status": {k: round(v, 4) for k, v in price["status"].items()},
            "city_sd": round(float(np.sqrt(tau2)), 4),
            "zip_sd": ZIP_SD,
            "noise_sd": round(noise_sd, 4),
            "noise_df": house_df,
            "acre_unbuilt": [round(float(b), 4) for b in acre_unbuilt],
            "size_slope_sd": round(price["size_slope_sd"], 4),
            "room_caps": price["caps"],
            "unbuilt_location": round(unbuilt_location, 4),
            "nonlinear": nonlinear,
        },
        "multi_unit": _multi_unit(complete, price["caps"]),
        "bed_on_log_size": _linear(bed, feats[["log_size"]]),
        "bath_on_bed_log_size": _linear(
            complete["bath"].clip(upper=12), pd.DataFrame({"bed": bed, "ls": feats["log_size"]})
        ),
        "ids": {
            "brokered_by_max": _round_up(sample["brokered_by"].max()),
            "street_max": _round_up(sample["street"].max()),
        },
        "loose_missing": {c: round(float(sample[c].isna().mean()), 5) for c in LOOSE_MISSING},
        "statuses": _statuses(sample),
        "kinds": _kinds(sample, kind_stats),
        "states": _states(sample, price, city_stats, tau2, land_state["mean"]),
    }


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
    feats = _features(rows)
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
    nonlinear["tree"] = _residual_tree(X, rows["resid"].to_numpy(float) - explained)
    fitted = pd.Series(0.0, index=priced.index)
    fitted[rows.index] = own_terms + eval_tree(nonlinear["tree"], X)
    return nonlinear, fitted


def _residual_tree(X: np.ndarray, resid: np.ndarray) -> dict[str, Any]:
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


def _round_up(value: float) -> float:
    """An id's upper bound to 3 significant digits, rounded up: a figure, not a row's id."""
    step = 10 ** max(int(np.floor(np.log10(max(value, 1.0)))) - 2, 0)
    return float(np.ceil((value + 1) / step) * step)


def _shape(logs: pd.Series) -> list[float]:
    """The standardised quantiles of a log size at world.SHAPE_LEVELS (its shape: skew, tails);
    normal ones when there are too few values to tell."""
    logs = logs.dropna()
    if len(logs) < MIN_SHAPE_ROWS:
        return [round(NormalDist().inv_cdf(p), 4) for p in SHAPE_LEVELS]
    z = (logs - logs.mean()) / logs.std()
    return [round(float(q), 4) for q in z.quantile(list(SHAPE_LEVELS))]


def _multi_unit(complete: pd.DataFrame, caps: dict[str, float]) -> dict[str, Any]:
    """Buildings of many units: how often a listing has more rooms than count towards its
    price (the caps), and how many rooms those have (log-normal). A linear model extrapolates
    their room counts into absurd prices; the price itself stays what their size says."""
    over = (complete["bed"] > caps["bed"]) | (complete["bath"] > caps["bath"])
    if over.sum() < 3:
        return {"share": 0.0, "log_bed": [0.0, 0.0], "log_bath": [0.0, 0.0]}
    return {
        "share": round(float(over.mean()), 5),
        "log_bed": _lognormal(complete.loc[over, "bed"], 1),
        "log_bath": _lognormal(complete.loc[over, "bath"], 1),
    }


def _acre_unbuilt(priced: pd.DataFrame, price: dict[str, Any]) -> np.ndarray:
    """How much more the lot's size moves the price of a listing without a house (land), below
    and above world.LAND_ACRE_KNEE: slopes of the residual on log lot size there, beyond the
    houses' common slope (least squares)."""
    rows = priced[priced["house_size"].isna() & priced["acre_lot"].notna()]
    if len(rows) < MIN_KIND_ROWS:
        return np.zeros(2)
    basis = land_acre_basis(_features(rows)["log_acre"].to_numpy(float))
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


def _states(
    sample: pd.DataFrame,
    price: dict[str, Any],
    city_stats: pd.DataFrame,
    tau2: float,
    land_effect: pd.Series,
) -> dict[str, Any]:
    """Per state: frequency, price effect and cities. Each city's effect is one posterior draw
    (fixed seed), so that rare cities still differ as much as real cities do."""
    rng = np.random.default_rng(WORLD_SEED)
    counts = sample.dropna(subset=["city"]).groupby(["state", "city"]).size()
    zips = sample.dropna(subset=["city", "zip_code"]).groupby(["state", "city"])["zip_code"]
    states = {}
    for state in US_STATES:
        entries = []
        if state in counts.index.get_level_values(0):
            entries = [
                (city, float(n), sorted({int(z) for z in zips.get_group((state, city))}))
                for city, n in counts[state].items()
            ]
        known = {city for city, _, _ in entries}
        entries += [
            (city, FALLBACK_WEIGHT, [z])
            for city, z in FALLBACK_CITIES.get(state, [])
            if city not in known
        ]
        cities = []
        for city, weight, city_zips in entries:
            key = f"{state}|{city}"
            if key in city_stats.index:
                effect = rng.normal(city_stats.loc[key, "mean"], city_stats.loc[key, "sd"])
            else:
                effect = rng.normal(0.0, np.sqrt(tau2))
            zip_effects = rng.normal(0.0, ZIP_SD, len(city_zips) + SYNTHETIC_ZIPS_PER_CITY)
            # [name, weight, price effect, [[zip, price effect], ...]]
            cities.append(
                [
                    city,
                    weight,
                    round(float(effect), 3),
                    [
                        [z, round(float(e), 3)]
                        for z, e in zip(_with_neighbours(city_zips), zip_effects, strict=True)
                    ],
                ]
            )
        slope = price["size_slope"][state]
        if state not in set(sample["state"]):  # unseen: a draw from the seen states' spread
            slope = rng.normal(0.0, price["size_slope_sd"])
        # a state with a handful of houses can fit a price that falls with size: bounded
        slope = np.clip(slope, -2 * price["size_slope_sd"], 2 * price["size_slope_sd"])
        states[state] = {
            "weight": float((sample["state"] == state).sum()) or FALLBACK_WEIGHT,
            "effect": round(price["state"][state], 4),
            "size_slope": round(float(slope), 4),
            "land_effect": round(float(land_effect.get(state, 0.0)), 4),
            "cities": cities,
        }
    return states


def _statuses(sample: pd.DataFrame) -> dict[str, Any]:
    """Per status: frequency, mix of kinds, and when (and whether) the listing sold before."""
    statuses = {}
    for status in STATUSES:
        rows = sample[sample["status"] == status]
        dates = pd.to_datetime(rows["prev_sold_date"], errors="coerce").dropna()
        months = dates.dt.strftime("%Y-%m").value_counts().sort_index()
        statuses[status] = {
            "weight": len(rows) / len(sample),
            "kinds": (rows["kind"].value_counts() / len(rows)).round(5).to_dict(),
            "prev_sold_missing": round(float(rows["prev_sold_date"].isna().mean()), 5),
            "prev_sold_months": {m: int(n) for m, n in months.items()},
        }
    return statuses


def _kinds(sample: pd.DataFrame, kind_stats: pd.DataFrame) -> dict[str, Any]:
    """Per kind: missing columns, price offset, size and lot distributions (log-normal)."""
    kinds = {}
    houses = sample[sample["kind"] == "0000"]
    for kind in sorted(set(sample["kind"])):
        rows = sample[sample["kind"] == kind]
        has_size = rows["house_size"].notna().sum() >= MIN_KIND_ROWS
        has_acre = rows["acre_lot"].notna().sum() >= MIN_KIND_ROWS
        flags = kind if kind != "other" else "0" * len(STRUCTURE)
        missing = [c for c, f in zip(STRUCTURE, flags, strict=True) if f == "1"]
        kinds[kind] = {
            "missing": missing,
            "price_offset": round(float(kind_stats.loc[kind, "mean"]), 4),
            "noise_sd": round(float(kind_stats.loc[kind, "noise_sd"]), 4),
            "noise_df": kind_stats.loc[kind, "noise_df"],
            "log_size": _lognormal((rows if has_size else houses)["house_size"], 100),
            "log_acre": _lognormal((rows if has_acre else houses)["acre_lot"], 0.01),
            "shape": {
                "log_size": _shape(np.log(rows["house_size"].clip(lower=100))),
                "log_acre": _shape(np.log(rows["acre_lot"].clip(lower=0.01))),
            },
        }
    return kinds


def _with_neighbours(zips: list[int]) -> list[int]:
    """The observed zip codes plus a few neighbours in the same 3-digit area."""
    out = list(zips)
    first = zips[0]
    step = 1 if first % 100 < 98 - SYNTHETIC_ZIPS_PER_CITY else -1
    candidate = first
    while len(out) < len(zips) + SYNTHETIC_ZIPS_PER_CITY:
        candidate += step
        if candidate not in out and candidate > 0:
            out.append(candidate)
    return out


def dump(figures: dict[str, Any]) -> str:
    """JSON with one line per state: readable diffs without a line per number."""
    states = figures["states"]
    head = json.dumps({**figures, "states": {}}, indent=1, ensure_ascii=False)
    lines = [json.dumps({s: v}, ensure_ascii=False)[1:-1] for s, v in states.items()]
    body = "{\n" + ",\n".join(lines) + "\n}"
    return head.replace('"states": {}', '"states": ' + body) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Command line: write the calibration figures derived from a CSV sample."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, required=True, help="a sample of the realtor CSV")
    parser.add_argument("--out", type=Path, default=CALIBRATION_PATH)
    args = parser.parse_args(argv)
    sample = pd.read_csv(args.csv)
    missing = sorted(set(RAW_COLUMNS) - set(sample.columns))
    if missing:
        raise SystemExit(f"{args.csv}: missing columns {missing}")
    figures = calibrate(sample)
    args.out.write_text(dump(figures))
    print(f"wrote {args.out} from {len(sample)} rows of {args.csv}")


if __name__ == "__main__":
    main()
