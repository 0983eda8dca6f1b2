"""Prometheus metrics of the prediction API (``GET /metrics``).

Each app gets its own registry, so several apps in one process (tests) do not share counters.

Under `tasador serve` several worker processes answer, each with its own counters, and a scrape
reaches one of them. So serving.server sets ``PROMETHEUS_MULTIPROC_DIR`` (a folder under the
state folder, emptied at start) before any worker imports prometheus_client: each worker then
keeps its values in files there, and ``/metrics`` adds up every worker's (prometheus_client's
multiprocess mode). Counters and latencies are summed; each gauge says how it combines
(``multiprocess_mode``): per worker (``pid`` label) where workers may differ, a sum or a maximum
where that is the meaning. A worker that dies (killed, crashed) is replaced by uvicorn; the new
one counts the restart and drops the dead one's per-worker gauges (``_worker_started``).

The inference log's, the registry watcher's (refusals, last swap) and the shadow scorer's state
live in each worker's memory: they are copied into the metrics (:meth:`ServingMetrics.publish`)
at every scrape of that worker and, in multiprocess mode, every ``PUBLISH_S`` by a thread of
each worker, so a scrape also shows the other workers' state as of at most that long ago.
"""

from __future__ import annotations

import os
import re
import threading
from contextlib import suppress
from pathlib import Path
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from serving import heap
from serving.background import PeriodicLoop
from serving.hot_swap import ModelWatcher
from serving.inference_log import InferenceLog
from serving.live_drift import LiveDriftReader
from serving.server import MULTIPROCESS_ENV
from serving.shadow import ShadowStats
from tasador.core.services import alive

PUBLISH_S = 1.0  # how stale another worker's gauges may be in a scrape
# prometheus_client's multiprocess files end in the pid of the worker that wrote them.
WORKER_FILE = re.compile(r"_(\d+)\.db$")

# Latency buckets around the 10 ms target, up to large batches.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

# The gauges: attribute -> name, help, how the workers' values combine (module doc), labels.
# How prometheus_client's multiprocess mode combines a gauge over the workers (module doc).
Combine = Literal["liveall", "livemax", "livesum", "sum"]
_GAUGES: dict[str, tuple[str, str, Combine, tuple[str, ...]]] = {
    # 1 for the version each worker serves: "livemax" is 1 while any worker serves it.
    "_model": (
        "tasador_model_info",
        "The model version serving (value 1), by name, version and alias.",
        "livemax",
        ("name", "version", "alias"),
    ),
    # Per worker (liveall): they swap one after the other.
    "version": ("tasador_model_version", "The version number serving (0: none).", "liveall", ()),
    "reachable": (
        "tasador_registry_reachable",
        "1 if the last poll of the model registry answered.",
        "liveall",
        (),
    ),
    # Each worker's own buffer (livesum); one spool folder, counted alike by every worker
    # (livemax); written since start: a worker that ended still wrote them (sum).
    "buffered": (
        "tasador_inference_log_buffered_rows",
        "Logged rows waiting in memory.",
        "livesum",
        (),
    ),
    "spooled": (
        "tasador_inference_log_spooled_rows",
        "Logged rows waiting in spool files.",
        "livemax",
        (),
    ),
    "written": (
        "tasador_inference_log_written_rows",
        "Logged rows written to the RAW database since start.",
        "sum",
        (),
    ),
    "_refused": (
        "tasador_model_refused",
        "The version the alias names but that failed validation (value 1), and why.",
        "livemax",
        ("version", "reason"),
    ),
    "last_swap": (
        "tasador_model_last_swap_seconds",
        "How long the last swap took from the decision to serve (from memory: a rollback).",
        "liveall",
        (),
    ),
    # Per worker: it should stay flat across swaps.
    "frozen": (
        "tasador_frozen_objects",
        "Objects frozen out of the garbage collector's reach after loads (serving.heap).",
        "liveall",
        (),
    ),
}
# The counters (summed over workers): attribute -> name, help.
_COUNTERS: dict[str, tuple[str, str]] = {
    "rows": ("tasador_predicted_rows", "Listings priced."),
    "swaps": ("tasador_model_swaps", "Model versions swapped in."),
    "non_finite": (
        "tasador_non_finite_predictions",
        "Listings the model priced NaN or infinite (answered 503, never served).",
    ),
    "dropped": (
        "tasador_inference_log_dropped_rows",
        "Logged rows dropped since start: over the spool or memory cap (lost).",
    ),
    "quarantined": (
        "tasador_inference_log_quarantined_rows",
        "Logged rows in spool files moved aside as *.corrupt since start.",
    ),
    "refusals": (
        "tasador_model_refusals",
        "Model versions refused by validation since start (they never served).",
    ),
    "restarts": (
        "tasador_worker_restarts",
        "Worker processes started to replace one that ended (killed, crashed).",
    ),
}


class ServingMetrics:
    """The API's Prometheus metrics in a registry of their own (see the module doc)."""

    _model: Gauge
    version: Gauge
    reachable: Gauge
    buffered: Gauge
    spooled: Gauge
    written: Gauge
    _refused: Gauge
    last_swap: Gauge
    frozen: Gauge
    rows: Counter
    swaps: Counter
    non_finite: Counter
    dropped: Counter
    quarantined: Counter
    refusals: Counter
    restarts: Counter

    def __init__(
        self,
        watcher: ModelWatcher,
        log: InferenceLog,
        shadow: ShadowStats | None = None,
        workers: int = 1,
        live_drift: LiveDriftReader | None = None,
    ) -> None:
        self.watcher, self.log, self.shadow = watcher, log, shadow or ShadowStats()
        self.live_drift = live_drift
        self.workers = workers  # worker processes the server runs (to tell a restart)
        self.multiprocess_dir = os.environ.get(MULTIPROCESS_ENV) or None
        self.registry = CollectorRegistry()
        r = self.registry
        for attr, (name, doc, mode, labels) in _GAUGES.items():
            setattr(self, attr, Gauge(name, doc, labels, registry=r, multiprocess_mode=mode))
        for attr, (name, doc) in _COUNTERS.items():
            setattr(self, attr, Counter(name, doc, registry=r))
        self.requests = Counter(
            "tasador_requests", "Requests answered.", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "tasador_request_latency_seconds",
            "Time from request to response.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # The newest live drift check (every worker reads the same row: the largest is it).
        live = {
            "alarm": "1 if the newest live drift check raised an alarm (tasador monitor).",
            "share": "Share of the newest live drift check's statistics beyond their limit.",
            "rows": "Served listings the newest live drift check read.",
            "checked_timestamp_seconds": "When the newest live drift check ran (0: never).",
        }
        self._live = {
            name: Gauge(f"tasador_live_drift_{name}", doc, registry=r, multiprocess_mode="livemax")
            for name, doc in live.items()
        }
        shadow_docs = {
            "scored": "Rows the @challenger priced in the shadow of production.",
            "written": "Shadow rows stored in RAW shadow_predictions.",
            "dropped": "Sampled rows not shadowed: the shadow queue was full (or shut down).",
            "failed": "Sampled rows the challenger failed to price.",
        }
        self._shadow_counters = {
            name: Counter(f"tasador_shadow_{name}_rows", doc, registry=r)
            for name, doc in shadow_docs.items()
        }
        self._serving: tuple[str, str, str] | None = None  # labels of the version serving
        self._refused_labels: tuple[str, str] | None = None
        # Totals already added to the counters that copy a worker's own counts.
        self._published: dict[str, int] = {}
        self._publishing = threading.Lock()
        self._publisher = PeriodicLoop("metrics", self.publish, PUBLISH_S, stop_timeout_s=5.0)

    def publish(self) -> None:
        """Copy this worker's watcher and log state into the metrics."""
        with self._publishing:
            current, stats = self.watcher.current, self.log.stats
            self.version.set(float(current.info.version) if current else 0.0)
            self.reachable.set(1.0 if self.watcher.status.reachable else 0.0)
            self.buffered.set(stats.buffered_rows)
            self.spooled.set(stats.spooled_rows)
            self.written.set(stats.written_rows)
            status = self.watcher.status
            totals = {
                "dropped": (self.dropped, stats.dropped_rows),
                "quarantined": (self.quarantined, stats.quarantined_rows),
                "refusals": (self.refusals, status.refusals),
                **{
                    f"shadow_{name}": (counter, getattr(self.shadow, f"{name}_rows"))
                    for name, counter in self._shadow_counters.items()
                },
            }
            for key, (counter, total) in totals.items():
                counter.inc(max(0, total - self._published.get(key, 0)))
                self._published[key] = total
            refused = status.refused
            labels = (refused.version, refused.code) if refused is not None else None
            if labels != self._refused_labels:
                if self._refused_labels is not None:  # multiprocess files keep cleared series
                    self._refused.labels(*self._refused_labels).set(0)
                if labels is not None:
                    self._refused.labels(*labels).set(1)
                self._refused_labels = labels
            self.last_swap.set(status.last_swap.seconds if status.last_swap else 0.0)
            self.frozen.set(heap.frozen_objects())
            live = self.live_drift.latest if self.live_drift is not None else None
            self._live["alarm"].set(1.0 if live is not None and live.alarm else 0.0)
            self._live["share"].set(live.share if live is not None else 0.0)
            self._live["rows"].set(live.rows if live is not None else 0)
            self._live["checked_timestamp_seconds"].set(live.checked_at if live else 0.0)

    def start(self) -> None:
        """In multiprocess mode, count this worker's start (:meth:`_worker_started`) and publish
        every ``PUBLISH_S`` (other workers' scrapes read it)."""
        if self.multiprocess_dir is None:
            return
        self._worker_started()
        self._publisher.start()

    def _worker_started(self) -> None:
        """Count a restart when this worker replaces one; drop the per-worker gauges of the
        workers that died.

        uvicorn's supervisor replaces a dead worker without telling the app, and a worker killed
        with SIGKILL never runs its :meth:`stop`, so its ``live*`` gauges (its version, its
        buffered rows) would stay in every scrape. The new worker reads the folder instead:
        every worker leaves files named with its pid from its start on (its counters are kept
        after it ends: its requests were answered), and serving.server empties the folder when
        the server starts. So more pids than configured workers means this one replaces another
        (the configured workers, starting together, can see at most each other); and a pid that
        no longer runs is a dead worker, whose ``live*`` gauges go (a pid reused meanwhile by
        another process would keep them: Linux hands pids out in turn, so not soon).
        """
        assert self.multiprocess_dir is not None
        pids = {
            int(match.group(1))
            for path in Path(self.multiprocess_dir).glob("*.db")
            if (match := WORKER_FILE.search(path.name))
        }
        pids.discard(os.getpid())
        if len(pids) + 1 > self.workers:
            self.restarts.inc()
        for pid in pids:
            if not alive(pid):
                # Another new worker may be removing the same files at once.
                with suppress(FileNotFoundError):
                    mark_process_dead(pid, self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def stop(self) -> None:
        """Stop publishing (once more: the log's last flush); this worker's per-worker gauges
        leave the scrapes."""
        self._publisher.stop()
        if self.multiprocess_dir is not None:
            self.publish()
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def model_swapped(self, name: str, version: str, alias: str) -> None:
        if self._serving is not None:  # multiprocess files keep a cleared series: zero it
            self._model.labels(*self._serving).set(0)
        self._model.clear()
        self._serving = (name, version, alias)
        self._model.labels(*self._serving).set(1)
        self.swaps.inc()

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        self.publish()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(every_worker)
