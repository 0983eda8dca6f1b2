"""The generator's world: states, cities, zip codes and price structure, from calibration.json.

Loaded once into numpy arrays laid out for vectorized sampling. ``calibrate.py`` writes the
file; this module only reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

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
    kind_log_size: np.ndarray  # (K, 2) mean, sd
    kind_log_acre: np.ndarray  # (K, 2) mean, sd
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
        kind_log_size=np.array([figures["kinds"][k]["log_size"] for k in kinds]),
        kind_log_acre=np.array([figures["kinds"][k]["log_acre"] for k in kinds]),
        price=figures["price"],
        multi_unit=figures["multi_unit"],
        bed_on_log_size=tuple(figures["bed_on_log_size"]),
        bath_on_bed_log_size=tuple(figures["bath_on_bed_log_size"]),
        brokered_by_max=figures["ids"]["brokered_by_max"],
        street_max=figures["ids"]["street_max"],
        loose_missing=figures["loose_missing"],
    )


# The price terms a model linear in the listing's features cannot represent, in this order:
# the square of the location's price level (dear places are dearer still), house size times
# that level (a square foot pays more where land is dear), and a house's lot past the knee.
NONLINEAR_TERMS = ("location_sq", "size_by_location", "house_acre_past_knee")


def nonlinear_basis(
    location: np.ndarray,
    size_dev: np.ndarray,
    log_acre: np.ndarray,
    has_size: np.ndarray,
    has_acre: np.ndarray,
    nonlinear: dict[str, Any],
) -> np.ndarray:
    """The (n, 3) values of NONLINEAR_TERMS: shared by the calibration (which fits their
    coefficients) and the generator (which applies them). ``size_dev`` is the centred log house
    size; a missing feature's values may be anything (NaN included): its terms are 0."""
    house = has_size & has_acre
    past_knee = np.where(house, np.maximum(np.nan_to_num(log_acre) - nonlinear["acre_knee"], 0), 0)
    return np.column_stack(
        [
            location**2 - nonlinear["location_sq_centre"],
            np.where(has_size, np.nan_to_num(size_dev) * location, 0.0),
            past_knee,
        ]
    )


# Land (no house) is priced by its lot with a knee: below about an acre a plot's price hardly
# depends on its size (a building plot is a building plot), above it rises steeply.
LAND_ACRE_KNEE = 0.0  # log acres


def land_acre_basis(log_acre: np.ndarray) -> np.ndarray:
    """The (n, 2) log lot size below and above LAND_ACRE_KNEE (each 0 on the other side)."""
    dev = np.nan_to_num(log_acre) - LAND_ACRE_KNEE
    return np.column_stack([np.minimum(dev, 0.0), np.maximum(dev, 0.0)])
