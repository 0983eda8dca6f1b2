"""The generator's world: states, cities, zip codes and price structure, from calibration.json.

Loaded once into numpy arrays laid out for vectorized sampling. ``calibrate.py`` writes the
file; this module only reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

import numpy as np

from tasador.core.columns import STATUSES

CALIBRATION_PATH = Path(__file__).with_name("calibration.json")
# Missingness is modelled by "kind": which of these columns are missing, as flags
# (e.g. "1101" is a plot of land with only a lot size).
STRUCTURE = ("bed", "bath", "acre_lot", "house_size")


@dataclass(frozen=True)
class World:
    """The calibrated world as numpy arrays: location frequencies, price effects and relations."""

    states: tuple[str, ...]
    state_weight: np.ndarray  # (S,) relative frequency
    state_effect: np.ndarray  # (S,) log-price effect
    state_size_slope: np.ndarray  # (S,) the state's own log-size slope, beyond the common one
    state_land_effect: np.ndarray  # (S,) land's own log-price level in the state
    # Cities of all states in one array. city_cum[c] = state index + cumulative share of the
    # city within its state, so searchsorted(city_cum, state + u) draws a city of that state.
    city_cum: np.ndarray
    city_name: np.ndarray  # (C,) object
    city_effect: np.ndarray
    city_zip_start: np.ndarray  # index into zip_code of the city's first zip
    city_zip_count: np.ndarray
    zip_code: np.ndarray  # (Z,) float, like the Kaggle file
    zip_effect: np.ndarray
    status_weight: np.ndarray  # (3,) in STATUSES order
    status_kind_p: np.ndarray  # (3, K) P(kind | status)
    prev_sold_missing: np.ndarray  # (3,)
    prev_sold_months: tuple[tuple[np.ndarray, np.ndarray], ...]  # per status: months, probs
    kinds: tuple[str, ...]
    kind_missing: np.ndarray  # (K, 4) bool, columns of STRUCTURE
    kind_offset: np.ndarray  # (K,) log-price offset
    kind_noise_sd: np.ndarray  # (K,) sd of the listing's log-price noise
    kind_noise_df: np.ndarray  # (K,) its Student-t degrees of freedom (inf: Gaussian)
    kind_log_size: np.ndarray  # (K, 2) mean, sd
    kind_log_acre: np.ndarray  # (K, 2) mean, sd
    # log_size, log_acre: (K, len(SHAPE_LEVELS)) standardised quantiles per kind
    kind_shape: dict[str, np.ndarray]
    price: dict[str, Any]
    multi_unit: dict[str, Any]  # share of many-unit buildings, their rooms' log mean and sd
    bed_on_log_size: tuple[float, float, float]
    bath_on_bed_log_size: tuple[float, float, float, float]
    brokered_by_max: float
    street_max: float
    loose_missing: dict[str, float]

    def state_index(self, names: list[str]) -> np.ndarray:
        lookup = {s: i for i, s in enumerate(self.states)}
        return np.array([lookup[n] for n in names], dtype=int)


@cache
def load_world() -> World:
    """The world read from ``calibration.json`` (once: cached)."""
    figures = json.loads(CALIBRATION_PATH.read_text())
    states = tuple(figures["states"])
    names, cum, effects, zip_start, zip_count = [], [], [], [], []
    zips: list[float] = []
    zip_effects: list[float] = []
    for s_idx, state in enumerate(states):
        cities = figures["states"][state]["cities"]
        weights = np.array([c[1] for c in cities], dtype=float)
        shares = np.cumsum(weights) / weights.sum()
        shares[-1] = 1.0
        for (name, _, effect, city_zips), share in zip(cities, shares, strict=True):
            names.append(name)
            cum.append(s_idx + share)
            effects.append(effect)
            zip_start.append(len(zips))
            zip_count.append(len(city_zips))
            zips.extend(float(z) for z, _ in city_zips)
            zip_effects.extend(e for _, e in city_zips)

    kinds = tuple(figures["kinds"])
    status_figures = [figures["statuses"][s] for s in STATUSES]
    kind_p = np.array([[f["kinds"].get(k, 0.0) for k in kinds] for f in status_figures])
    months = []
    for f in status_figures:
        counts = f["prev_sold_months"] or {"2022-01": 1}
        months.append(
            (
                np.array(list(counts), dtype="datetime64[M]"),
                np.array(list(counts.values()), dtype=float) / sum(counts.values()),
            )
        )
    return World(
        states=states,
        state_weight=np.array([figures["states"][s]["weight"] for s in states], dtype=float),
        state_effect=np.array([figures["states"][s]["effect"] for s in states], dtype=float),
        state_size_slope=np.array([figures["states"][s]["size_slope"] for s in states]),
        state_land_effect=np.array([figures["states"][s]["land_effect"] for s in states]),
        city_cum=np.array(cum),
        city_name=np.array(names, dtype=object),
        city_effect=np.array(effects),
        city_zip_start=np.array(zip_start),
        city_zip_count=np.array(zip_count),
        zip_code=np.array(zips),
        zip_effect=np.array(zip_effects),
        status_weight=np.array([f["weight"] for f in status_figures]),
        status_kind_p=kind_p / kind_p.sum(axis=1, keepdims=True),
        prev_sold_missing=np.array([f["prev_sold_missing"] for f in status_figures]),
        prev_sold_months=tuple(months),
        kinds=kinds,
        kind_missing=np.array(
            [[c in figures["kinds"][k]["missing"] for c in STRUCTURE] for k in kinds]
        ),
        kind_offset=np.array([figures["kinds"][k]["price_offset"] for k in kinds]),
        kind_noise_sd=np.array([figures["kinds"][k]["noise_sd"] for k in kinds]),
        kind_noise_df=np.array(
            [figures["kinds"][k].get("noise_df") or np.inf for k in kinds], dtype=float
        ),
        kind_log_size=np.array([figures["kinds"][k]["log_size"] for k in kinds]),
        kind_log_acre=np.array([figures["kinds"][k]["log_acre"] for k in kinds]),
        kind_shape={
            name: np.array([figures["kinds"][k]["shape"][name] for k in kinds])
            for name in ("log_size", "log_acre")
        },
        price=figures["price"],
        multi_unit=figures["multi_unit"],
        bed_on_log_size=tuple(figures["bed_on_log_size"]),
        bath_on_bed_log_size=tuple(figures["bath_on_bed_log_size"]),
        brokered_by_max=figures["ids"]["brokered_by_max"],
        street_max=figures["ids"]["street_max"],
        loose_missing=figures["loose_missing"],
    )


# Probability levels of the standardised shapes of log house size and log lot size: the
# sample's are skewed and heavy-tailed (excess kurtosis 4.5 and 3.0 on houses), not normal.
SHAPE_LEVELS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5,
    0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.9975, 0.999, 0.9995,
)  # fmt: skip


def draw_shape(quantiles: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Standardised values with the calibrated shapes: row i's quantile function
    (``quantiles[i]``, at SHAPE_LEVELS) at ``u[i]``, linear between levels, flat beyond."""
    pos = np.interp(u, SHAPE_LEVELS, np.arange(len(SHAPE_LEVELS)))
    low = np.minimum(pos.astype(int), len(SHAPE_LEVELS) - 2)
    rows = np.arange(len(u))
    weight = pos - low
    return cast(np.ndarray, (1 - weight) * quantiles[rows, low] + weight * quantiles[rows, low + 1])


# The price terms a model linear in the listing's features cannot represent, in this order:
# the square of the location's price level (dear places are dearer still), house size times
# that level (a square foot pays more where land is dear), a house's lot past the knee, and its
# size past the size knee (a mansion's or a block's extra square feet pay less).
NONLINEAR_TERMS = ("location_sq", "size_by_location", "house_acre_past_knee", "size_past_knee")


def nonlinear_basis(
    location: np.ndarray,
    size_dev: np.ndarray,
    log_acre: np.ndarray,
    has_size: np.ndarray,
    has_acre: np.ndarray,
    nonlinear: dict[str, Any],
) -> np.ndarray:
    """The (n, 4) values of NONLINEAR_TERMS: shared by the calibration (which fits their
    coefficients) and the generator (which applies them). ``size_dev`` is the centred log house
    size; a missing feature's values may be anything (NaN included): its terms are 0."""
    house = has_size & has_acre
    past_knee = np.where(house, np.maximum(np.nan_to_num(log_acre) - nonlinear["acre_knee"], 0), 0)
    return np.column_stack(
        [
            location**2 - nonlinear["location_sq_centre"],
            np.where(has_size, np.nan_to_num(size_dev) * location, 0.0),
            past_knee,
            np.where(has_size, np.maximum(np.nan_to_num(size_dev) - nonlinear["size_knee"], 0), 0),
        ]
    )


# Land (no house) is priced by its lot with a knee: below about an acre a plot's price hardly
# depends on its size (a building plot is a building plot), above it rises steeply.
LAND_ACRE_KNEE = 0.0  # log acres


def land_acre_basis(log_acre: np.ndarray) -> np.ndarray:
    """The (n, 2) log lot size below and above LAND_ACRE_KNEE (each 0 on the other side)."""
    dev = np.nan_to_num(log_acre) - LAND_ACRE_KNEE
    return np.column_stack([np.minimum(dev, 0.0), np.maximum(dev, 0.0)])


# What the residual tree (calibrate.py) splits on, in this order; a missing value is MISSING.
# Not the location level: the sample knows it only through the row's few neighbours, so a tree
# on it would not carry over to the generated cities.
TREE_FEATURES = ("log_size", "log_acre", "bed", "bath", "status")
MISSING = -99.0


def tree_features(
    log_size: np.ndarray,
    log_acre: np.ndarray,
    bed: np.ndarray,
    bath: np.ndarray,
    status: np.ndarray,
) -> np.ndarray:
    """The (n, 5) matrix of TREE_FEATURES (NaN -> MISSING); ``status`` as STATUSES indices."""
    columns = np.column_stack([log_size, log_acre, bed, bath, status]).astype(float)
    return cast(np.ndarray, np.nan_to_num(columns, nan=MISSING))


def eval_tree(tree: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """The calibrated regression tree's value for each row of ``X`` (vectorized by depth)."""
    feature, threshold = np.array(tree["feature"]), np.array(tree["threshold"])
    left, right, value = np.array(tree["left"]), np.array(tree["right"]), np.array(tree["value"])
    node = np.zeros(len(X), dtype=int)
    rows = np.arange(len(X))
    for _ in range(int(tree["depth"])):
        inner = left[node] >= 0
        go_left = X[rows, np.maximum(feature[node], 0)] <= threshold[node]
        node = np.where(inner, np.where(go_left, left[node], right[node]), node)
    return value[node]
