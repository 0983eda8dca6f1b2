"""Calibrated price ranges on real listings: coverage and width against one width for all.

    uv run python benchmarks/conformal.py [--csv ../shared/data/realtor-sample-5k.csv]
                                          [--families xgboost,lightgbm,random_forest,ridge,catboost]
                                          [--coverage 0.8] [--folds 5] [--rows N]

The CSV (the real 5k sample by default) is cleaned by the platform's rules, shuffled (fixed
seed) and split in two halves, as ``benchmarks/search.py --csv`` does with its rows: a version of
each family is fitted on the first half, its ranges calibrated exactly as registration does
(experiments.calibration: out-of-fold residuals of the configuration on its training rows,
Mondrian by houses and land and by bins of predicted price), and both are scored on the second
half, which neither saw. Per version it prints the measured coverage overall, for houses and for
land, and the mean width relative to the price, ``(high - low) / price``, next to those of the
constant-width interval calibrated on the same residuals at the same coverage: standard split
conformal, ``price x exp(+-q)`` with one ``q`` for every listing (crepes' ConformalRegressor
without categories). Goal: coverage within 3 points of nominal overall and per kind, and a mean
width at least 15% below the constant-width one.

``--rows`` keeps only that many cleaned rows (a quick check that the script runs).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from crepes import ConformalRegressor

from experiments import calibration
from experiments.families import build_model
from experiments.inputs import model_input
from tasador.core.cleaning import clean_frame
from tasador.core.columns import TARGET

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "realtor-sample-5k.csv"
SEED = 2024
# One reasonable configuration per family (the search would pick its own; the ranges are
# calibrated for whichever it picks, the same way).
PARAMS: dict[str, dict[str, Any]] = {
    "xgboost": {"n_estimators": 400, "max_depth": 6, "learning_rate": 0.05},
    "lightgbm": {"n_estimators": 400, "num_leaves": 31, "learning_rate": 0.05},
    "random_forest": {"n_estimators": 200, "min_samples_leaf": 3},
    "ridge": {"alpha": 1.0},
    "catboost": {"iterations": 400, "depth": 6, "learning_rate": 0.08},
}
KINDS = ("overall", "houses", "land")


def halves(path: Path, rows: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The CSV's cleaned rows, shuffled, in two halves: fit and calibrate, score."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False).replace("", None)
    clean, _ = clean_frame(raw)
    clean = clean.sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    if rows is not None:
        clean = clean.head(rows)
    middle = len(clean) // 2
    return clean.iloc[:middle].reset_index(drop=True), clean.iloc[middle:].reset_index(drop=True)


def _scores(
    truth: np.ndarray, low: np.ndarray, high: np.ndarray, prices: np.ndarray, land: np.ndarray
) -> dict[str, float]:
    inside = (truth >= low) & (truth <= high)
    masks = {"overall": np.ones(len(truth), bool), "houses": ~land, "land": land}
    out = {k: float(inside[m].mean()) if m.any() else float("nan") for k, m in masks.items()}
    out["width"] = float(np.mean((high - low) / prices))
    return out


def version(family: str, train: pd.DataFrame, score: pd.DataFrame, coverage: float, folds: int):
    """One family's version: its adaptive ranges and the constant-width ones, on ``score``."""
    model = build_model(family, PARAMS[family], n_jobs=-1, seed=0)
    model.fit(train.drop(columns=[TARGET]), train[TARGET].to_numpy(dtype=np.float64))
    started = time.perf_counter()
    oof = calibration.out_of_fold(model, train, folds, seed=0)
    truth_train = train[TARGET].to_numpy(dtype=np.float64)
    table = calibration.calibrate(truth_train, oof, calibration.land_of(train), "first half")
    seconds = time.perf_counter() - started
    prices = np.asarray(model.predict(model_input(score)), dtype=np.float64).ravel()
    truth, land = score[TARGET].to_numpy(dtype=np.float64), calibration.land_of(score)
    adaptive = _scores(truth, *table.bounds(prices, land, coverage), prices, land)
    constant = ConformalRegressor().fit(np.log(truth_train) - np.log(oof))
    ends = constant.predict_int(np.log(prices), confidence=coverage)
    fixed = _scores(truth, np.exp(ends[:, 0]), np.exp(ends[:, 1]), prices, land)
    return adaptive, fixed, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", type=Path, default=SAMPLE)
    parser.add_argument("--families", default=",".join(PARAMS))
    parser.add_argument("--coverage", type=float, default=0.8)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=None, help="cleaned rows kept (quick check)")
    args = parser.parse_args()
    train, score = halves(args.csv, args.rows)
    land = calibration.land_of(score)
    print(
        f"{args.csv.name}: {len(train)} cleaned rows to fit and calibrate on, {len(score)} to "
        f"score ({int(land.sum())} land); nominal coverage {args.coverage:.0%}, {args.folds} "
        f"folds; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        flush=True,
    )
    print(
        "| version | covered: all / houses / land | mean width | constant width: covered "
        "all / houses / land | its mean width | narrower by | calibration s |"
    )
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for family in args.families.split(","):
        adaptive, fixed, seconds = version(family, train, score, args.coverage, args.folds)
        gain = 1 - adaptive["width"] / fixed["width"]
        covered = " / ".join(f"{adaptive[k]:.1%}" for k in KINDS)
        fixed_covered = " / ".join(f"{fixed[k]:.1%}" for k in KINDS)
        print(
            f"| {family} | {covered} | {adaptive['width']:.2f} | {fixed_covered} | "
            f"{fixed['width']:.2f} | {gain:.1%} | {seconds:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
