"""The search and the inference log past one machine: N processes on one PostgreSQL.

    uv run python benchmarks/scale_out.py [--workers 2,4,8,16,32,64] [--modes rdb,mlflow,grpc]
                                          [--seconds 20] [--trial-ms 5] [--proxy-threads 10]
                                          [--serving 2,4,8,16,32,64] [--rows-per-pass 500]

Where one study stops scaling, and what moves the limit. ``benchmarks/search_scale.py`` times
one retraining's steps as the data grows (real fits, the default few workers); this script
makes trials cheap (``--trial-ms`` of sleep spread over the folds, nothing fitted), so what is
measured is the storage each trial goes through, with many more workers than cores.

Sets up a private embedded PostgreSQL and a private embedded MLflow server (benchmarks.measure).
For each mode of ``--modes`` and each N of ``--workers``, a fresh study gets N worker processes
(spawned, as ``experiments.search_worker.run_workers`` starts them); each loads the study, waits
until all are ready, then runs trials for ``--seconds``. A trial is shaped like the search's:
a family and two parameters suggested, the worker's user attributes set, one report per fold
with the median pruner asked each time, and the trial counted against the study's trials (the
``MaxTrialsCallback`` query). Modes:

- ``rdb``: the search's own storage (``experiments.study.storage``: RDBStorage, heartbeats);
- ``mlflow``: the same, plus each trial's nested MLflow run under the study's parent run
  (``experiments.runs``: created with an explicit parent run id, params, one metric per fold,
  tags, ended), as the search's objective logs it; ``MLFLOW_RUN_ID`` is unset first;
- ``grpc``: Optuna's gRPC storage proxy (``run_grpc_proxy_server``, one process holding the
  database connections, ``--proxy-threads`` handlers) in front of the same database, workers
  on ``GrpcStorageProxy`` (which has no heartbeats: a dead worker's trial is not retried).

Then, for each N of ``--serving``, N processes append to the inference log of one RAW database
through serving's own code (``serving.inference_log.InferenceLog``: its buffer and its writer's
pass, ``serving.log_rows``' COPY), each recording ``--rows-per-pass`` single-listing requests
and writing them, back to back for ``--seconds``: the database's ceiling for N replicas.

While each level runs, a thread samples PostgreSQL every 0.25 s: connections held (clients of
the measured database, and of the whole server: MLflow's own database included) from
``pg_stat_activity``, and lock waits (``pg_locks`` not granted). Errors are exceptions that
reached a worker's loop (the worker carries on) plus failed trials (or failed log passes).
It prints one table per part, where each stops scaling (the first N whose throughput is not
10% above the previous N's), and the load. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import sys
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
from fleet import HEADER, Level, max_connections, run_level, stops_at, when_ready
from measure import load_note, private_mlflow, table
from pydantic import SecretStr

from tasador import startup
from tasador.core import db, migrations
from tasador.core.config import Settings
from tasador.core.process import prepare_process
from tasador.core.services import free_port

MODES = ("rdb", "mlflow", "grpc")
RAW_DB, OPTUNA_DB = "scale_raw", "scale_optuna"  # databases of the embedded server
FAMILIES = ("ridge", "random_forest", "xgboost", "lightgbm")
FOLDS = 3
LISTING = (
    '{"brokered_by": 101, "status": "for_sale", "bed": 3, "bath": 2, "acre_lot": 0.2,'
    ' "street": 5, "city": "Austin", "state": "Texas", "zip_code": "78701",'
    ' "house_size": 1800.0, "prev_sold_date": "2015-06-01"}'
)


# --- the search -----------------------------------------------------------------------------


class CheapObjective:
    """A trial shaped like the search's objective, with a sleep for the fits."""

    def __init__(self, settings: Settings, worker: int, trial_ms: float, parent: str | None):
        self.worker, self.pause_s, self.parent = worker, trial_ms / 1000 / FOLDS, parent
        self.client: Any = None
        if parent is not None:
            from experiments import registry

            self.client = registry.connect(settings)
            self.experiment = self.client.get_run(parent).info.experiment_id

    def __call__(self, trial: optuna.Trial) -> float:
        from experiments import runs
        from experiments.search_worker import RUNNING_CV
        from experiments.study import RUN_ID_ATTR, WORKER_ATTR, WORKER_INDEX_ATTR

        family = trial.suggest_categorical("family", FAMILIES)
        value = trial.suggest_float(f"{family}_alpha", 1e-3, 1.0, log=True)
        trial.suggest_int(f"{family}_depth", 2, 12)
        run_id = None
        if self.client is not None:
            tags = {runs.KIND_TAG: "trial", runs.TRIAL_TAG: str(trial.number)}
            name = f"trial-{trial.number:05d}-{family}"
            run_id = runs.create_run(self.client, self.experiment, name, tags, self.parent)
            runs.log(self.client, run_id, params=trial.params)
            trial.set_user_attr(RUN_ID_ATTR, run_id)
        trial.set_user_attr(WORKER_ATTR, f"bench:{os.getpid()}")
        trial.set_user_attr(WORKER_INDEX_ATTR, self.worker)
        for step in range(FOLDS):
            time.sleep(self.pause_s)
            if run_id is not None:
                runs.log(self.client, run_id, metrics={RUNNING_CV: value}, step=step)
            trial.report(value, step)
            if trial.should_prune():
                if run_id is not None:  # as the search closes a pruned trial's run
                    runs.log(self.client, run_id, tags={runs.STATE_TAG: "PRUNED"})
                    runs.end(self.client, run_id, "KILLED")
                raise optuna.TrialPruned()
        if run_id is not None:
            runs.log(self.client, run_id, tags={runs.STATE_TAG: "COMPLETE"})
            runs.end(self.client, run_id)
        return value


def search_storage(mode: str, settings: Settings, proxy_port: int) -> optuna.storages.BaseStorage:
    if mode == "grpc":
        proxy = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=proxy_port)
        proxy.wait_server_ready(timeout=60)
        return proxy
    from experiments.study import storage

    return storage(settings)


def search_worker(
    index: int,
    mode: str,
    settings: Settings,
    study_name: str,
    proxy_port: int,
    trial_ms: float,
    parent: str | None,
    start: Any,
    results: Any,
    seconds: float,
) -> None:
    """One search worker: trials of the study for ``seconds`` after ``start``."""
    from optuna.study import MaxTrialsCallback

    from experiments.study import COUNTED_STATES, WORKER_INDEX_ATTR

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # The proxy and heartbeats are "experimental" in Optuna 5 and warn on every use.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    def setup() -> tuple[optuna.Study, CheapObjective]:
        study = optuna.load_study(
            study_name=study_name,
            storage=search_storage(mode, settings, proxy_port),
            sampler=optuna.samplers.RandomSampler(seed=index),  # the sampler's CPU left out
            pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0),
        )
        objective = CheapObjective(settings, index, trial_ms, parent)
        # One trial before the window: imports, connections and the MLflow session warmed up.
        study.optimize(objective, n_trials=1, catch=(Exception,))
        return study, objective

    if (ready := when_ready(results, start, seconds, setup)) is None:
        return
    (study, objective), deadline = ready
    began = datetime.now()  # Optuna stamps trials in local time
    errors = Counter[str]()
    callbacks = [MaxTrialsCallback(10**9, states=COUNTED_STATES)]  # its query, never its stop
    while (left := deadline - time.monotonic()) > 0:
        try:
            study.optimize(objective, timeout=left, callbacks=callbacks, catch=(Exception,))
        except Exception as exc:  # a storage error escapes optimize: count it, carry on
            errors[type(exc).__name__] += 1
            time.sleep(0.1)
    mine = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get(WORKER_INDEX_ATTR) == index and t.datetime_start >= began
    ]
    done = sum(t.state in COUNTED_STATES for t in mine)
    if failed := sum(t.state == optuna.trial.TrialState.FAIL for t in mine):
        errors["failed trials"] = failed
    results.put(("done", done, dict(errors)))


def run_proxy(settings: Settings, port: int, threads: int) -> None:
    """The gRPC proxy process: the one holder of the study database's connections."""
    from experiments.study import storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.storages.run_grpc_proxy_server(
        optuna.storages.get_storage(storage(settings)),  # cached, as Optuna's docs advise
        host="127.0.0.1",
        port=port,
        thread_pool=ThreadPoolExecutor(max_workers=threads),
    )


@contextmanager
def proxy_running(settings: Settings, threads: int) -> Iterator[int]:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=run_proxy, args=(settings, port, threads), daemon=True
    )
    process.start()
    try:
        yield port
    finally:
        process.terminate()
        process.join(10)
        if process.is_alive():
            process.kill()


def search_level(
    mode: str, n: int, settings: Settings, args: argparse.Namespace, maintenance_url: str
) -> Level:
    from experiments import registry, runs
    from experiments.study import storage

    study_name = f"scale-{mode}-{n}-{uuid.uuid4().hex[:6]}"
    optuna.create_study(study_name=study_name, storage=storage(settings))
    parent = None
    if mode == "mlflow":
        client = registry.connect(settings)
        experiment = runs.experiment_id(client, "scale-out")
        parent = runs.create_run(client, experiment, study_name, {runs.KIND_TAG: "study"})
    level = Level(mode, n)
    with proxy_running(settings, args.proxy_threads) if mode == "grpc" else _no_proxy() as port:
        run_level(
            level,
            search_worker,
            (mode, settings, study_name, port, args.trial_ms, parent),
            args.seconds,
            OPTUNA_DB,
            maintenance_url,
        )
    if parent is not None:
        runs.end(registry.connect(settings), parent)
    return level


@contextmanager
def _no_proxy() -> Iterator[int]:
    yield 0


# --- the inference log ----------------------------------------------------------------------


def log_writer(
    index: int,
    settings: Settings,
    spool_root: Path,
    rows_per_pass: int,
    start: Any,
    results: Any,
    seconds: float,
) -> None:
    """One serving replica's inference log, written back to back for ``seconds``."""
    from serving.inference_log import Entry, InferenceLog
    from serving.schema import Listing

    listing = Listing.model_validate_json(LISTING)
    with db.owning_engines():

        def setup() -> InferenceLog:
            engine = db.engine("raw", settings.databases)
            log = InferenceLog(
                lambda: engine,
                spool_root / f"replica-{index}",
                max_buffered_rows=max(rows_per_pass * 2, 100),
                flush_s=settings.serving.serving_log_flush_s,
            )
            # One pass before the window: the connection and the COPY path warmed up.
            log.record(Entry("predict", 200, datetime.now(UTC), 1.0, [listing], [1.0], "m", "1"))
            log.flush()
            return log

        if (ready := when_ready(results, start, seconds, setup)) is None:
            return
        log, deadline = ready
        before = log.stats.written_rows
        errors = Counter[str]()
        while time.monotonic() < deadline:
            now = datetime.now(UTC)
            for _ in range(rows_per_pass):
                log.record(Entry("predict", 200, now, 1.0, [listing], [250_000.0], "m", "1"))
            if not log.flush():
                errors[log.stats.last_error or "failed pass"] += 1
        results.put(("done", log.stats.written_rows - before, dict(errors)))


def serving_level(
    n: int, settings: Settings, args: argparse.Namespace, maintenance_url: str, state: Path
) -> Level:
    spool = state / f"spool-{n}"
    level = Level("inference log", n)
    run_level(
        level, log_writer, (settings, spool, args.rows_per_pass), args.seconds, RAW_DB,
        maintenance_url,
    )  # fmt: skip
    shutil.rmtree(spool, ignore_errors=True)
    return level


# --- report ---------------------------------------------------------------------------------


def numbers(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="2,4,8,16,32,64", help="search processes per level")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per level")
    parser.add_argument("--trial-ms", type=float, default=5.0, help="sleep per trial (the fits)")
    parser.add_argument("--proxy-threads", type=int, default=10, help="gRPC proxy handlers")
    parser.add_argument("--serving", default="2,4,8,16,32,64", help="inference-log processes")
    parser.add_argument("--rows-per-pass", type=int, default=500)
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    os.environ.pop("MLFLOW_RUN_ID", None)  # each trial's run names its parent explicitly
    # A stopped benchmark (timeout, kill) still stops its servers: the finally blocks run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    with private_mlflow("tasador-bench-scale-out-") as base:
        pg = base.pg_dir
        maintenance = startup.server_url(pg)
        urls = {
            "raw": startup.database_url(pg, RAW_DB),
            "optuna": startup.database_url(pg, OPTUNA_DB),
        }
        migrations.upgrade(urls["raw"], "raw")
        settings = base.updated(
            raw_db_url=SecretStr(urls["raw"]), optuna_storage_url=SecretStr(urls["optuna"])
        )
        print(f"{load_note()}; PostgreSQL max_connections {max_connections(maintenance)}")
        rows, found = [HEADER], []
        for mode in modes:
            levels = []
            for n in numbers(args.workers):
                levels.append(search_level(mode, n, settings, args, maintenance))
                print(table([HEADER, levels[-1].row()]).splitlines()[-1], flush=True)
            rows += [level.row() for level in levels]
            found.append(f"search, {mode}: {stops_at(levels)}")
        levels = []
        for n in numbers(args.serving):
            levels.append(serving_level(n, settings, args, maintenance, base.state_dir))
            print(table([HEADER, levels[-1].row()]).splitlines()[-1], flush=True)
        rows += [level.row() for level in levels]
        found.append(f"inference log: {stops_at(levels)}")
        print(f"\nper s: trials (search) or rows (inference log); {args.seconds:.0f} s per level,")
        print(f"trials of {args.trial_ms:.0f} ms, {args.rows_per_pass} rows per log pass")
        print(table(rows))
        print("\n".join(found))
        print(load_note())


if __name__ == "__main__":
    prepare_process()  # a benchmark is an entry point, like the `tasador` command
    main()
