"""From a retrain decision to a promoted model at growing cumulative sizes, default budget.

    uv run python benchmarks/search_scale.py [--batches 100000,200000,361000,419000]
                                             [--studies 1,2,4] [--refit-curve 50000,...]

Stores generated listings (``datasource``'s generator) batch by batch into the RAW/CLEAN databases
of a private embedded PostgreSQL, with a private embedded MLflow server. After the batches named
by ``--studies`` (1-based: the default measures 100k, 300k and 1.08M cumulative rows) it runs one
retraining as the training DAG does, with the default settings: ``prepare_study``, ``run_workers``
(``search_workers`` processes), ``finish_study``; and prints per step the wall time, and the peak
memory of this process and of the worker processes. ``finish_study`` is split by wrapping its
parts: refit (read rows + fit), register (log the model), load (read the versions back), holdout
(score both models, decide), SHAP, report.

``--refit-curve`` then refits the last study's best configuration on training samples of those
sizes and scores each on the holdout: the evidence for ``refit_sample_rows``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from pydantic import SecretStr

from datasource.generator import generate_listings
from experiments import champion, data, explain, refit, registry, report, spaces
from experiments.families import build_model
from experiments.search_worker import run_workers
from experiments.study import COUNTED_STATES, load_study
from tasador import startup
from tasador.core import db, migrations, raw_store
from tasador.core.columns import RAW_COLUMNS, TARGET
from tasador.core.config import Settings
from tasador.core.metrics import rmsle
from tasador.core.process import prepare_process
from tasador.loop import ingest
from tasador.loop.training import plan_retraining

TIMES: dict[str, float] = defaultdict(float)


def timed(owner: Any, name: str, label: str) -> None:
    """Wrap ``owner.name`` so its wall time adds up under ``label``."""
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES[label] += time.monotonic() - started

    setattr(owner, name, wrapper)


class PeakMemory:
    """Samples the RSS of every process below this one (workers, forkservers, trial fits)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        me = psutil.Process()
        while not self.stop.wait(0.5):
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.peak = max(self.peak, child.memory_info().rss / 2**20)


def settings_for(state: Path) -> Settings:
    pg = state / "postgres"
    urls = {kind: startup.database_url(pg, f"scale_{kind}") for kind in ("raw", "clean", "optuna")}
    settings = Settings(
        state_dir=state,
        raw_db_url=SecretStr(urls["raw"]),
        clean_db_url=SecretStr(urls["clean"]),
        optuna_storage_url=SecretStr(urls["optuna"]),
        _env_file=None,
    )
    for database in ("raw", "clean"):
        migrations.upgrade(urls[database], database)
    return settings.updated(mlflow_tracking_uri=startup.ensure_server(settings))


def store(settings: Settings, number: int, rows: int) -> float:
    frame = generate_listings(rows, seed=1000 + number).loc[:, list(RAW_COLUMNS)]
    started = time.monotonic()
    stored = raw_store.store_batch(
        db.engine("raw", settings.databases),
        group_number=1,
        day=None,
        batch_number=number,
        rows=frame.astype(object).where(frame.notna(), None).to_numpy().tolist(),
        payload_sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        source="benchmark",
    )
    ingest.clean(settings.databases, stored.id)
    return time.monotonic() - started


def retrain(settings: Settings) -> tuple[dict[str, float], str]:
    TIMES.clear()
    started = time.monotonic()
    plan = plan_retraining(settings)
    TIMES["plan"] = time.monotonic() - started
    started = time.monotonic()
    run_workers(plan.study_name, settings, settings.search.search_workers)
    TIMES["search"] = time.monotonic() - started
    started = time.monotonic()
    result = champion.finish_study(plan.study_name, settings)
    finish = time.monotonic() - started
    TIMES["refit"] = TIMES.pop("challenger") - TIMES["register"] - TIMES["load"]
    TIMES["holdout"] -= TIMES["load"]  # challenge() loads the production version
    TIMES["finish, other"] = finish - sum(
        TIMES[k] for k in ("refit", "register", "load", "holdout", "SHAP", "report")
    )
    TIMES["total"] = sum(v for k, v in TIMES.items() if k != "total")
    study, _ = load_study(plan.study_name, settings)
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if t.state in COUNTED_STATES]
    stopped = sum("stopped" in t.user_attrs for t in trials)
    durations = sorted(t.duration.total_seconds() for t in counted if t.duration)
    line = (
        f"{len(counted)} trials ({sum(t.state.name == 'PRUNED' for t in counted)} pruned, "
        f"{stopped} stopped at the time limit), trial s median "
        f"{durations[len(durations) // 2]:.1f} max {durations[-1]:.1f}; best "
        f"{result.challenger.family} CV {study.best_value:.4f}, holdout "
        f"{result.challenger.metrics['rmsle']:.4f}, promoted {result.promoted}"
    )
    return dict(TIMES), line


def refit_curve(settings: Settings, sizes: list[int]) -> None:
    ids = data.clean_batch_ids(settings.databases)
    study, plan = load_study(plan_retraining(settings).study_name, settings)
    best = refit.best_trial(study)
    family = best.params[spaces.FAMILY_PARAM]
    params, smoothing = plan.search_spaces()[family].from_trial(best.params)
    train, holdout = data.training_rows(settings, ids), data.holdout_rows(settings, ids)
    print(f"\nrefit curve: {family} {params}, {len(holdout):,} holdout rows")
    print("| refit rows | fit s | holdout RMSLE |\n| ---: | ---: | ---: |")
    for size in [*sizes, len(train)]:
        rows = data.sample(train, size, plan.seed)
        model = build_model(family, params, n_jobs=-1, seed=plan.seed, smoothing=smoothing or 10)
        started = time.monotonic()
        model.fit(rows.drop(columns=[TARGET]), data.target(rows))
        fit_s = time.monotonic() - started
        score = rmsle(data.target(holdout), model.predict(holdout.drop(columns=[TARGET])))
        print(f"| {len(rows):,} | {fit_s:.1f} | {score:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="100000,200000,361000,419000")
    parser.add_argument("--studies", default="1,2,4", help="after which batches (1-based)")
    parser.add_argument("--refit-curve", default="", help="e.g. 50000,100000,200000,400000")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    studies = {int(s) for s in args.studies.split(",")}

    timed(refit, "refit_and_register", "challenger")
    timed(champion, "challenge", "holdout")
    timed(registry, "log_and_register", "register")
    timed(registry, "load_version", "load")
    timed(explain, "explain_change", "SHAP")
    timed(report, "model_change_report", "report")

    # A stopped benchmark still stops its servers (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    memory = PeakMemory()
    state = Path(tempfile.mkdtemp(prefix="tasador-bench-scale-"))
    try:
        settings = settings_for(state)
        search = settings.search
        print(
            f"defaults: {search.search_trials} trials, {search.search_workers} workers, "
            f"budget {search.search_timeout_s} s, trial limit {search.search_trial_timeout_s}"
            f" s, search sample {search.search_sample_rows:,}, refit sample "
            f"{search.refit_sample_rows:,}, SHAP {search.shap_sample_rows}; "
            f"{os.cpu_count()} cores",
            flush=True,
        )
        cumulative, table = 0, []
        for number, rows in enumerate(batches, start=1):
            store_s = store(settings, number, rows)
            cumulative += rows
            print(f"batch {number}: {rows:,} rows stored and cleaned in {store_s:.0f} s")
            if number not in studies:
                continue
            load = os.getloadavg()[0]
            times, line = retrain(settings)
            print(f"  {cumulative:,} cumulative rows: {line}", flush=True)
            print("  " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()), flush=True)
            table.append((cumulative, times, load, os.getloadavg()[0]))
        steps = ["plan", "search", "refit", "register", "load", "holdout", "SHAP", "report"]
        print(
            "\n| cumulative rows | " + " | ".join(steps) + " | total s | goal < 600 s | load |\n"
            "| ---: |" + " ---: |" * (len(steps) + 1) + " --- | --- |"
        )
        for cumulative, times, before, after in table:
            cells = " | ".join(f"{times.get(k, 0):.0f}" for k in steps)
            met = "met" if times["total"] < 600 else "not met"
            print(
                f"| {cumulative:,} | {cells} | {times['total']:.0f} | {met} | "
                f"{before:.1f} to {after:.1f} |"
            )
        print(
            f"peak RSS: this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10:,}"
            f" MiB, largest process below it {memory.peak:,.0f} MiB (sampled; goal < 6,144; "
            "PostgreSQL and MLflow included)"
        )
        if args.refit_curve:
            refit_curve(settings, [int(s) for s in args.refit_curve.split(",")])
    finally:
        startup.stop_server(Settings(state_dir=state, _env_file=None))
        startup.stop(state / "postgres")
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    prepare_process()  # a benchmark is an entry point, like the `tasador` command
    main()
