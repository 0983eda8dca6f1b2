"""How far a study's search is: trials done of the budget, best so far, time left.

Read from the Optuna storage, so it works whoever runs the workers (``tasador search``'s
processes, Airflow's mapped tasks): :func:`watching` polls it in a thread and reports each change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import optuna
from optuna.trial import TrialState

from experiments import study as search
from experiments.spaces import FAMILY_PARAM
from tasador.core.config import Settings
from tasador.core.errors import TasadorError


def describe(study: optuna.Study, n_trials: int, timeout_s: float | None) -> str:
    """``trials 12/40 (2 running), best RMSLE 0.2134 (lightgbm), 3m05s left``."""
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in search.COUNTED_STATES for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    parts = [f"trials {done}/{n_trials}" + (f" ({running} running)" if running else "")]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if complete:
        best = min(complete, key=lambda t: t.value or 0.0)
        parts.append(f"best RMSLE {best.value:.4f} ({best.params.get(FAMILY_PARAM, '?')})")
    # Once the trial budget is spent the time left no longer matters (and would be reported
    # every few seconds while the champion/challenger step runs).
    left = search.seconds_left(study, timeout_s) if done < n_trials else None
    if left is not None:
        minutes, seconds = divmod(max(0, round(left)), 60)
        parts.append(f"{minutes}m{seconds:02d}s left")
    return ", ".join(parts)


def describe_workers(study: optuna.Study, workers: int) -> str:
    """``worker 0: 6 trials, worker 1: 5 trials``: each of the ``workers`` (a worker that ran
    none shows 0), then any process that ran trials without a worker index."""
    counts = search.trials_by_worker(study)
    named = [str(i) for i in range(workers)]
    others = sorted(set(counts) - set(named))
    return ", ".join(
        f"worker {w}: {counts.get(w, 0)} trial{'' if counts.get(w, 0) == 1 else 's'}"
        for w in named + others
    )


@contextmanager
def watching(
    settings: Settings,
    study_name: str,
    echo: Callable[[str], None],
    timeout_s: float | None = None,
    every_s: float = 5.0,
) -> Iterator[None]:
    """Report the study's progress through ``echo`` every ``every_s`` seconds while it changes
    (the study may not exist yet: it is reported once it does). ``timeout_s`` None: the
    setting."""
    stop = threading.Event()
    budget = settings.search.search_timeout_s if timeout_s is None else timeout_s

    def watch() -> None:
        last = ""
        loaded: tuple[optuna.Study, search.StudyPlan] | None = None
        while not stop.wait(every_s):
            try:
                # Loaded once: each load opens a storage (a connection pool) of its own.
                loaded = loaded or search.load_study(study_name, settings)
                study, plan = loaded
                line = describe(study, plan.n_trials, budget)
            except (TasadorError, KeyError, OSError):
                continue  # not planned yet
            if line != last:
                echo(f"  search: {line}")
                last = line

    thread = threading.Thread(target=watch, name="search-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
