"""Derive the generator's calibration (``calibration.json``) from a sample of the realtor CSV.

Run ``uv run python -m datasource.calibrate --csv ../shared/data/realtor-sample-5k.csv``.
The output holds figures, never rows: state and city frequencies, price effects of location,
feature relations, missingness and date histograms. Location effects that a 5k sample cannot
pin down (a city seen once, a zip code) are drawn once here from their posterior with a fixed
seed, so the generated "world" is the same for every run and every seed of the generator. The
price model these figures come from is fitted in :mod:`datasource.price_fit`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from datasource.price_fit import (
    MIN_KIND_ROWS,
    US_STATES,
    ZIP_SD,
    PriceFit,
    features,
    fit_prices,
)
from datasource.world import CALIBRATION_PATH, SHAPE_LEVELS, STRUCTURE
from tasador.core.columns import RAW_COLUMNS, STATUSES

WORLD_SEED = 20240101

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
SYNTHETIC_ZIPS_PER_CITY = 2
# Kinds with fewer sizes (or lot sizes) than this draw them log-normal.
MIN_SHAPE_ROWS = 200
# Columns whose missingness is independent of the kind, with their own rates.
LOOSE_MISSING = ("brokered_by", "street", "city", "price")


def _kind(frame: pd.DataFrame) -> pd.Series:
    flags = frame[list(STRUCTURE)].isna().astype(int).astype(str)
    return flags.agg("".join, axis=1)


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
    fit = fit_prices(sample, complete)
    price = fit.price

    feats = features(complete)  # uncapped: how many rooms a house of a size has
    bed = complete["bed"].clip(upper=12)
    return {
        "source": f"{len(sample)} rows of the realtor CSV; figures only",
        "world_seed": WORLD_SEED,
        "price": {
            "intercept": round(price["intercept"], 4),
            "betas": {k: round(v, 4) for k, v in price["betas"].items()},
            "centre": {k: round(v, 4) for k, v in price["centre"].items()},
            "status": {k: round(v, 4) for k, v in price["status"].items()},
            "city_sd": round(float(np.sqrt(fit.tau2)), 4),
            "zip_sd": ZIP_SD,
            "noise_sd": round(fit.noise_sd, 4),
            "noise_df": fit.house_df,
            "acre_unbuilt": [round(float(b), 4) for b in fit.acre_unbuilt],
            "size_slope_sd": round(price["size_slope_sd"], 4),
            "room_caps": price["caps"],
            "unbuilt_location": round(fit.unbuilt_location, 4),
            "nonlinear": fit.nonlinear,
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
        "kinds": _kinds(sample, fit.kind_stats),
        "states": _states(sample, fit),
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


def _states(sample: pd.DataFrame, fit: PriceFit) -> dict[str, Any]:
    """Per state: frequency, price effect and cities. Each city's effect is one posterior draw
    (fixed seed), so that rare cities still differ as much as real cities do."""
    price, city_stats, tau2, land_effect = fit.price, fit.city_stats, fit.tau2, fit.land_state
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
