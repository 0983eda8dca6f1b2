"""Is the generated world as hard as the real one? Best CV RMSLE per model family, side by side.

    uv run python benchmarks/realism.py [--csv ../shared/data/realtor-sample-5k.csv]
                                        [--trials 16] [--families xgboost,lightgbm,...]
                                        [--seed 2024]

For the real sample and for as many generated listings (``datasource.generate_listings``), both
cleaned by the platform's own rules (``clean_frame``), each family of ``search_spaces/`` is searched
on its own (TPE, ``--trials`` trials) with the study's model builder and 5-fold CV (the
project's features and families, no database or MLflow). The table gives the best CV RMSLE per
family and its ratio to the best family of the same data: the generator is realistic when
families rank, and differ, as they do on real rows (there: boosting best, ridge about 1.18x).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from sklearn.model_selection import KFold

from experiments import spaces
from experiments.families import build_model
from tasador.core.cleaning import clean_frame
from tasador.core.columns import TARGET
from tasador.core.metrics import rmsle
from tasador.core.process import prepare_process

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "realtor-sample-5k.csv"
FOLDS = 5


def cleaned(raw: pd.DataFrame) -> pd.DataFrame:
    """Raw rows as text (as RAW holds them) through the platform's cleaning."""
    text = raw.astype(object).where(raw.notna(), None).astype("string")
    frame, _ = clean_frame(text.reset_index(drop=True))
    return frame.reset_index(drop=True)


def real_rows(path: Path) -> pd.DataFrame:
    return cleaned(pd.read_csv(path, dtype=str, keep_default_na=False).replace("", None))


def generated_rows(n: int, seed: int) -> pd.DataFrame:
    from datasource.generator import generate_listings

    return cleaned(generate_listings(n, seed=seed))


def cv_objective(rows: pd.DataFrame, space: spaces.SearchSpace, seed: int) -> Callable:
    """5-fold CV RMSLE of one sampled configuration of ``space``'s family."""
    X = rows.drop(columns=[TARGET])
    y = rows[TARGET].to_numpy(dtype="float64")
    folds = list(KFold(FOLDS, shuffle=True, random_state=seed).split(X))

    def objective(trial: optuna.Trial) -> float:
        params, smoothing = space.suggest(trial)
        extra = {} if smoothing is None else {"smoothing": smoothing}
        predicted = np.empty(len(y))
        for fit_rows, score_rows in folds:
            model = build_model(space.family, params, seed=seed, **extra)
            model.fit(X.iloc[fit_rows], y[fit_rows])
            predicted[score_rows] = model.predict(X.iloc[score_rows])
        return rmsle(y, predicted)

    return objective


def best_per_family(
    rows: pd.DataFrame, families: list[str], trials: int, seed: int
) -> dict[str, float]:
    found = spaces.load_spaces(spaces.DEFAULT_DIR, families)
    best = {}
    for name, space in found.items():
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, trials))
        study = optuna.create_study(direction="minimize", sampler=sampler)
        n = min(trials, 8) if name == "ridge" else trials  # two parameters: few trials suffice
        study.optimize(cv_objective(rows, space, seed), n_trials=n)
        best[name] = study.best_value
    return best


def table(results: dict[str, dict[str, float]]) -> str:
    sources = list(results)
    families = list(results[sources[0]])
    head = " | ".join(f"{s} CV RMSLE | {s} / best" for s in sources)
    lines = [f"| family | {head} |", "| --- |" + " ---: | ---: |" * len(sources)]
    for fam in families:
        cells = []
        for s in sources:
            value, best = results[s][fam], min(results[s].values())
            cells.append(f"{value:.4f} | {value / best:.3f}x")
        lines.append(f"| {fam} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", type=Path, default=SAMPLE, help="the real sample")
    parser.add_argument("--trials", type=int, default=16, help="per family (ridge: at most 8)")
    parser.add_argument("--families", default="xgboost,lightgbm,random_forest,ridge")
    parser.add_argument("--seed", type=int, default=2024, help="of the generated rows and CV")
    parser.add_argument("--only", choices=("real", "generated"), help="one side only")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    families = args.families.split(",")

    real = real_rows(args.csv)
    data = {"real": real, "generated": generated_rows(len(pd.read_csv(args.csv)), args.seed)}
    if args.only:
        data = {args.only: data[args.only]}
    print(
        f"{len(real)} real rows after cleaning, {len(data.get('generated', []))} generated; "
        f"{args.trials} trials per family; load average before {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    results = {}
    for source, rows in data.items():
        started = time.monotonic()
        results[source] = best_per_family(rows, families, args.trials, args.seed)
        print(
            f"  {source}: {time.monotonic() - started:.0f} s "
            f"(load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    print(table(results))


if __name__ == "__main__":
    prepare_process()  # a benchmark is an entry point, like the `tasador` command
    main()
