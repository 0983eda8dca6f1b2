"""Prometheus metrics of the prediction API (``GET /metrics``).

Each app gets its own registry, so several apps in one process (tests) do not share counters.
The inference log's and the registry watcher's state are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from serving.hot_swap import ModelWatcher
from serving.inference_log import InferenceLog

# Latency buckets around the 10 ms target, up to large batches.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _CountedByLog(Collector):
    """Counters the inference log keeps itself (its writer thread counts; scrapes read)."""

    def __init__(self, log: InferenceLog) -> None:
        self.log = log

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = self.log.stats
        yield CounterMetricFamily(
            "tasador_inference_log_dropped_rows",
            "Logged rows dropped since start: over the spool or memory cap (lost).",
            value=stats.dropped_rows,
        )
        yield CounterMetricFamily(
            "tasador_inference_log_quarantined_rows",
            "Logged rows in spool files moved aside as *.corrupt since start.",
            value=stats.quarantined_rows,
        )


class _Validation(Collector):
    """The watcher's refusals and last swap (serving.hot_swap), read at scrape time."""

    def __init__(self, watcher: ModelWatcher) -> None:
        self.watcher = watcher

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        status = self.watcher.status
        yield CounterMetricFamily(
            "tasador_model_refusals",
            "Model versions refused by validation since start (they never served).",
            value=status.refusals,
        )
        refused = GaugeMetricFamily(
            "tasador_model_refused",
            "The version the alias names but that failed validation (value 1), and why.",
            labels=["version", "reason"],
        )
        if status.refused is not None:
            refused.add_metric([status.refused.version, status.refused.code], 1.0)
        yield refused
        swap = status.last_swap
        yield GaugeMetricFamily(
            "tasador_model_last_swap_seconds",
            "How long the last swap took from the decision to serve (from memory: a rollback).",
            value=swap.seconds if swap else 0.0,
        )


class ServingMetrics:
    """The API's Prometheus metrics in a registry of their own."""

    def __init__(self, watcher: ModelWatcher, log: InferenceLog) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
        self.rows = Counter("tasador_predicted_rows", "Listings priced.", registry=r)
        self.swaps = Counter("tasador_model_swaps", "Model versions swapped in.", registry=r)
        self.non_finite = Counter(
            "tasador_non_finite_predictions",
            "Listings the model priced NaN or infinite (answered 503, never served).",
            registry=r,
        )
        r.register(_CountedByLog(log))
        r.register(_Validation(watcher))
        model = Gauge(
            "tasador_model_info",
            "The model version serving (value 1), by name, version and alias.",
            ["name", "version", "alias"],
            registry=r,
        )
        self._model = model
        self._gauge(
            "tasador_model_version",
            "The version number serving (0: none).",
            lambda: float(watcher.current.info.version) if watcher.current else 0.0,
        )
        self._gauge(
            "tasador_registry_reachable",
            "1 if the last poll of the model registry answered.",
            lambda: 1.0 if watcher.status.reachable else 0.0,
        )
        self._gauge(
            "tasador_inference_log_buffered_rows",
            "Logged rows waiting in memory.",
            lambda: log.stats.buffered_rows,
        )
        self._gauge(
            "tasador_inference_log_spooled_rows",
            "Logged rows waiting in spool files.",
            lambda: log.stats.spooled_rows,
        )
        self._gauge(
            "tasador_inference_log_written_rows",
            "Logged rows written to the RAW database since start.",
            lambda: log.stats.written_rows,
        )

    def _gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        Gauge(name, doc, registry=self.registry).set_function(read)

    def model_swapped(self, name: str, version: str, alias: str) -> None:
        self._model.clear()
        self._model.labels(name, version, alias).set(1)
        self.swaps.inc()

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
