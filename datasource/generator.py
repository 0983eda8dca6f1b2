"""A seeded, vectorized generator of realistic realtor listings.

Each listing draws a status, a "kind" (which structural features it has: a house, a condo
without lot, a plot of land, ...), a state, a city of that state and one of the city's zip
codes; then features from the kind's distributions and a log price from location, features,
status and kind, with the sample's non-linear parts: house size pays differently by state, room
counts stop adding past a cap, lot size matters more for land, which carries only part of its
location's price level, and the noise depends on the kind, with heavy tails. Values come out as
the Kaggle CSV has them (ids and zip codes as floats, dates as ``YYYY-MM-DD`` text, missing as
NaN).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from datasource.world import (
    NONLINEAR_TERMS,
    World,
    draw_shape,
    eval_tree,
    land_acre_basis,
    load_world,
    nonlinear_basis,
    tree_features,
)
from tasador.core.columns import RAW_COLUMNS, STATUSES

# How long rejection sampling for a price band may go on before the band counts as empty.
MAX_TRIES_FACTOR = 50
COMPLETE_KIND = "0000"


class GeneratorKnobs(BaseModel):
    """What a caller (or a scenario batch) may change about the generated listings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: dict[str, float] | None = Field(
        default=None, description="relative weights of statuses; default: as calibrated"
    )
    states: list[str] | None = Field(default=None, description="only these states")
    exclude_states: list[str] = Field(default_factory=list)
    state_boost: dict[str, float] = Field(
        default_factory=dict, description="multiply a state's frequency"
    )
    price_min: float | None = Field(default=None, ge=0, description="keep price > price_min")
    price_max: float | None = Field(default=None, gt=0, description="keep price <= price_max")
    price_multiplier: float = Field(default=1.0, gt=0, description="price level at same features")
    complete: bool = Field(default=False, description="no missing value in any column")
    noise_sd: float | None = Field(default=None, ge=0, description="log-price noise")

    @field_validator("status")
    @classmethod
    def _known_statuses(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        unknown = sorted(set(value) - set(STATUSES))
        if unknown:
            raise ValueError(f"unknown status {unknown}; known: {list(STATUSES)}")
        if any(w < 0 for w in value.values()) or not any(w > 0 for w in value.values()):
            raise ValueError("status weights must be >= 0 with at least one > 0")
        return value

    @field_validator("states", "exclude_states")
    @classmethod
    def _known_state_list(cls, value: list[str] | None) -> list[str] | None:
        _check_states(value or [])
        return value

    @field_validator("state_boost")
    @classmethod
    def _known_state_boost(cls, value: dict[str, float]) -> dict[str, float]:
        _check_states(value)
        if any(w <= 0 for w in value.values()):
            raise ValueError("state_boost factors must be > 0")
        return value

    @model_validator(mode="after")
    def _band_and_states_not_empty(self) -> GeneratorKnobs:
        if (
            self.price_min is not None
            and self.price_max is not None
            and self.price_min >= self.price_max
        ):
            raise ValueError("price_min must be below price_max")
        allowed = set(self.states or load_world().states) - set(self.exclude_states)
        if not allowed:
            raise ValueError("states and exclude_states leave no state to draw from")
        return self


def _check_states(names: Iterable[str]) -> None:
    known = load_world().states
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown state {unknown}; known: {sorted(known)}")


def generate_listings(n: int, seed: int | Sequence[int] = 0, **knobs: Any) -> pd.DataFrame:
    """``n`` listings with the 12 Kaggle columns; same ``seed`` and knobs, same rows.

    ``knobs`` are the fields of ``GeneratorKnobs`` (e.g. ``status={"sold": 1}``,
    ``price_max=300_000``, ``complete=True``). A price band is met by rejection sampling, so the
    features of the kept rows shift with the band, as they do in the real file.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    options = GeneratorKnobs(**knobs)
    entropy = [seed] if isinstance(seed, int) else list(seed)
    if any(part < 0 for part in entropy):
        raise ValueError(f"seed must be made of non-negative integers, not {seed}")
    world = load_world()
    banded = options.price_min is not None or options.price_max is not None
    parts: list[pd.DataFrame] = []
    have = tried = 0
    chunk = n if not banded else math.ceil(n * 1.25) + 64
    while True:
        rng = np.random.default_rng([*entropy, len(parts)])
        frame = _draw(world, chunk, rng, options)
        tried += chunk
        if banded:
            price = frame["price"].to_numpy()
            keep = np.ones(len(frame), dtype=bool)
            if options.price_min is not None:
                keep &= price > options.price_min
            if options.price_max is not None:
                keep &= price <= options.price_max
            frame = frame[keep]
        parts.append(frame)
        have += len(frame)
        if have >= n:
            break
        if tried > MAX_TRIES_FACTOR * n + 10_000:
            raise ValueError(
                f"the price band ({options.price_min}, {options.price_max}] keeps too few "
                f"generated rows ({have} of {tried} tried)"
            )
        rate = max(have / tried, 1e-3)
        chunk = min(math.ceil((n - have) / rate * 1.1) + 64, 2_000_000)
    return pd.concat(parts, ignore_index=True).iloc[:n].reset_index(drop=True)


def _status_weights(world: World, knobs: GeneratorKnobs) -> np.ndarray:
    weights = (
        world.status_weight.copy()
        if knobs.status is None
        else np.array([knobs.status.get(s, 0.0) for s in STATUSES])
    )
    if knobs.complete:
        # Only complete houses with a previous sale: reweight statuses by how often they are.
        complete_kind = world.kinds.index(COMPLETE_KIND)
        weights = weights * world.status_kind_p[:, complete_kind] * (1 - world.prev_sold_missing)
        if weights.sum() == 0:
            raise ValueError("no status with these weights can produce complete rows")
    return cast(np.ndarray, weights / weights.sum())


def _state_weights(world: World, knobs: GeneratorKnobs) -> np.ndarray:
    weights = world.state_weight.copy()
    if knobs.states is not None:
        allowed = np.zeros(len(weights), dtype=bool)
        allowed[world.state_index(knobs.states)] = True
        weights[~allowed] = 0
    weights[world.state_index(knobs.exclude_states)] = 0
    for state, factor in knobs.state_boost.items():
        weights[world.states.index(state)] *= factor
    return cast(np.ndarray, weights / weights.sum())


def _draw(world: World, n: int, rng: np.random.Generator, knobs: GeneratorKnobs) -> pd.DataFrame:
    status = rng.choice(len(STATUSES), size=n, p=_status_weights(world, knobs))
    if knobs.complete:
        kind = np.full(n, world.kinds.index(COMPLETE_KIND))
    else:
        cum = np.cumsum(world.status_kind_p, axis=1)[status]
        kind = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), len(world.kinds) - 1)

    state = rng.choice(len(world.states), size=n, p=_state_weights(world, knobs))
    city = np.searchsorted(world.city_cum, state + rng.random(n), side="right")
    zip_idx = world.city_zip_start[city] + (rng.random(n) * world.city_zip_count[city]).astype(int)

    z_size = draw_shape(world.kind_shape["log_size"][kind], rng.random(n))
    log_size = world.kind_log_size[kind, 0] + world.kind_log_size[kind, 1] * z_size
    house_size = np.round(np.exp(log_size).clip(250, 30_000))
    a, b, sd = world.bed_on_log_size
    bed = np.round(a + b * log_size + rng.normal(0, sd, n)).clip(1, 12)
    a, b_bed, b_size, sd = world.bath_on_bed_log_size
    bath = np.round(a + b_bed * bed + b_size * log_size + rng.normal(0, sd, n)).clip(1, 12)
    bed, bath = _multi_unit(world, bed, bath, rng)
    z_acre = draw_shape(world.kind_shape["log_acre"][kind], rng.random(n))
    log_acre = world.kind_log_acre[kind, 0] + world.kind_log_acre[kind, 1] * z_acre
    acre_lot = np.round(np.exp(log_acre).clip(0.01, 5_000), 2)

    price = world.price
    missing = world.kind_missing[kind]  # (n, 4) in STRUCTURE order: bed, bath, acre, size
    caps = price["room_caps"]
    terms = {
        "bed": (np.minimum(bed, caps["bed"]), missing[:, 0]),
        "bath": (np.minimum(bath, caps["bath"]), missing[:, 1]),
        "log_acre": (np.log(acre_lot), missing[:, 2]),
        "log_size": (np.log(house_size), missing[:, 3]),
    }
    location = world.state_effect[state] + world.city_effect[city] + world.zip_effect[zip_idx]
    # Land (no house) carries only part of its location's price level.
    location *= np.where(missing[:, 3], price["unbuilt_location"], 1.0)
    location += np.where(missing[:, 3], world.state_land_effect[state], 0.0)
    log_price = (
        price["intercept"]
        + location
        + np.array([price["status"][s] for s in STATUSES])[status]
        + world.kind_offset[kind]
        + _noise(world, kind, rng, knobs.noise_sd)
    )
    for name, (values, absent) in terms.items():
        log_price += np.where(absent, 0.0, price["betas"][name] * (values - price["centre"][name]))
    # Non-linear parts: house size pays differently by state; a lot's size matters far more for
    # land (no house) than for a house.
    size, no_size = terms["log_size"]
    own_slope = world.state_size_slope[state] * (size - price["centre"]["log_size"])
    log_price += np.where(no_size, 0.0, own_slope)
    acre, no_acre = terms["log_acre"]
    land_acre = land_acre_basis(acre) @ np.array(price["acre_unbuilt"])
    log_price += np.where(no_size & ~no_acre, land_acre, 0.0)
    nonlinear = price["nonlinear"]
    basis = nonlinear_basis(
        location, size - price["centre"]["log_size"], acre, ~no_size, ~no_acre, nonlinear
    )
    log_price += basis @ np.array([nonlinear["coef"][name] for name in NONLINEAR_TERMS])
    nan = np.nan
    X = tree_features(
        np.where(no_size, nan, size),
        np.where(no_acre, nan, acre),
        np.where(missing[:, 0], nan, bed),
        np.where(missing[:, 1], nan, bath),
        status,
    )
    log_price += eval_tree(nonlinear["tree"], X)
    raw_price = np.exp(log_price) * knobs.price_multiplier
    # Asking prices are round numbers: to $100 below a million, to $1,000 above.
    step = np.where(raw_price < 1e6, 100.0, 1000.0)
    listing_price = np.maximum(np.round(raw_price / step) * step, 100.0)

    frame = pd.DataFrame(
        {
            "brokered_by": rng.integers(1, int(world.brokered_by_max), n).astype(float),
            "status": np.array(STATUSES, dtype=object)[status],
            "price": listing_price,
            "bed": np.where(missing[:, 0], np.nan, bed),
            "bath": np.where(missing[:, 1], np.nan, bath),
            "acre_lot": np.where(missing[:, 2], np.nan, acre_lot),
            "street": rng.integers(0, int(world.street_max), n).astype(float),
            "city": world.city_name[city],
            "state": np.array(world.states, dtype=object)[state],
            "zip_code": world.zip_code[zip_idx],
            "house_size": np.where(missing[:, 3], np.nan, house_size),
            "prev_sold_date": _prev_sold_dates(world, status, rng, knobs.complete),
        },
        columns=list(RAW_COLUMNS),
    )
    if not knobs.complete:
        for column, rate in world.loose_missing.items():
            frame.loc[rng.random(n) < rate, column] = np.nan
    return frame


def _multi_unit(
    world: World, bed: np.ndarray, bath: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated share of listings are buildings of many units: room counts drawn from
    those buildings' own (log-normal) counts, up to 50; the price counts rooms only up to the
    caps, so it follows their size."""
    multi = world.multi_unit
    n = len(bed)
    many = rng.random(n) < multi["share"]
    rooms = []
    for column in ("bed", "bath"):
        mean, sd = multi[f"log_{column}"]
        rooms.append(np.round(np.exp(rng.normal(mean, sd, n))).clip(1, 50))
    return np.where(many, rooms[0], bed), np.where(many, rooms[1], bath)


def _noise(
    world: World, kind: np.ndarray, rng: np.random.Generator, noise_sd: float | None
) -> np.ndarray:
    """Log-price noise: its sd by kind (land is far noisier than houses), or ``noise_sd`` for
    every row; Student-t (unit variance) with the kind's degrees of freedom where the
    calibration found heavy tails, Gaussian elsewhere."""
    sd = world.kind_noise_sd[kind] if noise_sd is None else np.full(len(kind), noise_sd)
    df = np.minimum(world.kind_noise_df[kind], 1e6)  # 1e6: Gaussian to the last digit shown
    t = rng.standard_normal(len(kind)) / np.sqrt(rng.chisquare(df) / df)
    return cast(np.ndarray, sd * t * np.sqrt((df - 2) / df))


def _prev_sold_dates(
    world: World, status: np.ndarray, rng: np.random.Generator, complete: bool
) -> np.ndarray:
    n = len(status)
    dates = np.full(n, np.nan, dtype=object)
    u_missing = rng.random(n)
    u_day = rng.integers(0, 28, n)
    for s_idx in range(len(STATUSES)):
        rows = np.flatnonzero(status == s_idx)
        if not complete:
            rows = rows[u_missing[rows] >= world.prev_sold_missing[s_idx]]
        if len(rows) == 0:
            continue
        months, probs = world.prev_sold_months[s_idx]
        month = rng.choice(months, size=len(rows), p=probs)
        days = month.astype("datetime64[D]") + u_day[rows]
        # a datetime64[D] array: numpy's stubs lose the dtype of datetime64 + int
        dates[rows] = np.datetime_as_string(cast("npt.NDArray[np.datetime64]", days), unit="D")
    return dates
