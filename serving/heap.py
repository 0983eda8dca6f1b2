"""Keeping Python's cyclic garbage collector off the request path.

Why: a serving worker holds a large heap that never changes between model swaps (FastAPI,
pandas, scikit-learn, MLflow's client, numba, the loaded model's tables and trees: millions of
objects). CPython's collector walks every tracked object of the oldest generation in a full
collection, which requests trigger as they allocate: about a quarter of a second every few
seconds, during which no request on that worker is answered. A closed-loop client hardly sees
it (it waits, then carries on); an open-loop one such as ``wrk`` counts every request that would
have arrived meanwhile, so the p99 was 150-230 ms against a p50 under 1 ms
(docs/benchmarks.md, serving).

What: once a worker has loaded what it will keep (a model version, an explainer), collect what
the load left behind and :func:`gc.freeze` the rest: frozen objects sit in a permanent
generation no collection walks, so a full collection only visits what requests allocated
since. The cost is one collection per load, on the worker's watcher or explainer thread (the
first before the worker takes requests), and memory: a cycle among frozen objects is never
collected. Loads are rare (a swap, a rollback), and the previous version is dropped by
reference counting, which freezing does not stop; an unreachable cycle inside a dropped model
would stay, so the frozen count after each load is in ``/metrics`` to watch.
"""

from __future__ import annotations

import gc
import logging
import threading

logger = logging.getLogger(__name__)

_lock = threading.Lock()  # the watcher and an explainer build may finish at the same moment
# Counted once per settle: gc.get_freeze_count() walks the whole permanent generation holding
# the interpreter (40 ms for ~400k objects here), which a metric read every second must not do.
_frozen = 0


def settle(after: str) -> int:
    """Collect the garbage of a load, then freeze what remains; returns the frozen count.

    ``after`` names the load, for the log line (e.g. "version 3 loaded").
    """
    global _frozen
    with _lock:
        gc.collect()
        gc.freeze()
        _frozen = gc.get_freeze_count()
    logger.info("heap settled after %s: %d objects frozen", after, _frozen)
    return _frozen


def frozen_objects() -> int:
    """How many objects the last settle left frozen (as of then: counting now costs a walk)."""
    return _frozen
