"""A trial's cross-validation fits in a child process, so a time limit can stop any family.

Optuna cannot interrupt a running ``fit`` (its ``timeout`` is checked between trials), and only
some estimators have callbacks between boosting rounds. A child process can always be killed:
:func:`fold_predictions` fits the folds in one, receives each fold's out-of-fold predictions as
soon as they exist (the parent reports them to Optuna, which may prune) and kills the child when
the trial is pruned, fails or passes its time limit.

Children are forked from a ``forkserver``: a clean process that imports the model libraries once
and never runs a fit itself, so each child starts in milliseconds without inheriting the worker's
threads (heartbeat, MLflow, database pools) or an OpenMP runtime in use (not fork-safe). Nor
does a child run the parent's ``__main__`` again, as multiprocessing would by default: in an
Airflow task that is the `airflow` script, which in a task process cannot even start (Airflow
blocks its database URL there) and costs seconds of imports per trial anywhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import signal
import sys
import time
import traceback
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import pandas as pd

from experiments.families import build_model

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class TrialTimeLimit(Exception):
    """The trial's fits did not finish within its time limit; the child was killed."""


@dataclass(frozen=True)
class FoldWork:
    """What the child needs: the model recipe, the rows and the folds."""

    family: str
    params: Mapping[str, Any]
    extra: Mapping[str, Any]  # build_model keyword arguments (smoothing)
    n_jobs: int
    seed: int
    X: pd.DataFrame
    y: np.ndarray
    folds: Sequence[tuple[np.ndarray, np.ndarray]]


def _die_with_parent() -> None:
    """Linux: the child is killed when its parent (the forkserver) exits, which it does when the
    worker dies, so a killed worker leaves no fit running."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the child ends at its next fold instead
        pass


def _fit_folds(work: FoldWork, send: Connection) -> None:
    """Child: fit every fold in turn, sending (step, predictions) or ("error", traceback)."""
    _die_with_parent()
    try:
        for step, (fit_rows, score_rows) in enumerate(work.folds):
            model = build_model(
                work.family, work.params, n_jobs=work.n_jobs, seed=work.seed, **work.extra
            )
            model.fit(work.X.iloc[fit_rows], work.y[fit_rows])
            send.send((step, np.asarray(model.predict(work.X.iloc[score_rows]), dtype=float)))
    except BaseException:  # reported to the parent, which raises it
        send.send(("error", traceback.format_exc(limit=5)))
    finally:
        send.close()


def _nothing() -> None:
    pass


@contextmanager
def _main_hidden() -> Iterator[None]:
    """While a child starts: the parent's ``__main__`` looks like an interactive one, so the
    child's start-up does not run it (the child's target lives in this module)."""
    main = sys.modules["__main__"]
    spec, path = getattr(main, "__spec__", None), main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__spec__ = spec
        if path is not None:
            main.__file__ = path


@contextmanager
def _plain_parent() -> Iterator[None]:
    """While a child starts: the current process as multiprocessing expects its parents.

    An Airflow task on a Celery worker runs in a process forked from a prefork pool child, and
    billiard (Celery's multiprocessing) makes its pool process multiprocessing's current one:
    its authkey is billiard's type, which refuses to be pickled outside billiard's own spawning
    (a forkserver start pickles the parent's key), so it becomes multiprocessing's type; and it
    is daemonic, which multiprocessing refuses children (it could not join them at exit), so the
    flag is lifted: these children are joined or killed by the code that starts them and die
    with the forkserver. Both are restored afterwards."""
    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]  # no API
    saved = dict(config)
    config.pop("daemon", None)
    plain_key = multiprocessing.process.AuthenticationString  # type: ignore[attr-defined]
    config["authkey"] = plain_key(bytes(config["authkey"]))
    try:
        yield
    finally:
        config.clear()
        config.update(saved)


def _start(child: multiprocessing.process.BaseProcess) -> None:
    child.authkey = bytes(child.authkey)  # copied from the parent: multiprocessing's type too
    with _main_hidden(), _plain_parent():
        child.start()


def warm_up() -> None:
    """Start the forkserver (importing the model libraries) now, so no trial's time pays it;
    RuntimeError when a child cannot start (every trial would fail the same way)."""
    child = _CONTEXT.Process(target=_nothing, name="trial-warm-up")
    _start(child)
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"a trial's child process cannot start (exit code {child.exitcode})")


def fold_predictions(
    work: FoldWork, limit_s: float | None
) -> Generator[tuple[int, np.ndarray], None, None]:
    """(fold, out-of-fold predictions) per fold, fitted in a child process.

    Raises TrialTimeLimit when the folds are not all done ``limit_s`` seconds after the start,
    RuntimeError when a fit raised or the child died. Closing the iterator early (a pruned
    trial) kills the child too."""
    receive, send = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(target=_fit_folds, args=(work, send), name="trial-fit")
    _start(child)
    started = time.monotonic()
    send.close()  # the child holds the sending end now: EOF when it dies
    try:
        for _ in work.folds:
            wait = None if limit_s is None else max(0.0, started + limit_s - time.monotonic())
            if not receive.poll(wait):
                raise TrialTimeLimit(f"trial stopped at its time limit of {limit_s:g} s")
            try:
                message = receive.recv()
            except EOFError:
                child.join(5)
                raise RuntimeError(f"trial process died (exit code {child.exitcode})") from None
            if message[0] == "error":
                raise RuntimeError(f"fit failed in the trial process:\n{message[1]}")
            yield message
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()
