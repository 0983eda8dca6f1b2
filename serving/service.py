"""What the prediction API's routes share: the model watcher, the inference log, the shadow, the
metrics; and :meth:`Service.finish`, where every logged request ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from fastapi.responses import Response

from serving import heap
from serving.answers import LOGGED_BODY_BYTES, REQUEST_ID_HEADER, LoggedRequest, RequestRefused
from serving.bodies import Bodies
from serving.explanations import Explainers, explain_listing
from serving.hot_swap import ModelWatcher
from serving.inference_log import Entry, InferenceLog
from serving.live_drift import LiveDriftReader
from serving.metrics import ServingMetrics
from serving.models import ServedModel
from serving.schema import Explanation, Listing
from serving.server import workers
from serving.shadow import Shadow
from tasador.core import db
from tasador.core.config import Settings

logger = logging.getLogger(__name__)

FIRST_LOAD_CHECK_S = 0.05  # how often a starting worker looks whether its first load is done


class Service:
    """State shared by the endpoints: the model watcher, the inference log, the metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.watcher = ModelWatcher(settings, on_swap=self._swapped)
        self.log = InferenceLog(
            lambda: db.engine("raw", settings.databases),
            settings.state_dir / "serving" / "spool",
            settings.serving.serving_log_buffer_rows,
            settings.serving.serving_log_flush_s,
            max_spool_bytes=settings.serving.serving_log_spool_max_bytes,
            shutdown_s=settings.serving.serving_shutdown_s,
        )
        # The @challenger prices a sample of /predict rows in the background (serving.shadow).
        self.shadow = Shadow(
            settings, lambda: self.watcher.current, lambda: db.engine("raw", settings.databases)
        )
        # The newest live drift check, for /metrics (serving.live_drift).
        self.live_drift = LiveDriftReader(lambda: db.engine("raw", settings.databases))
        self.metrics = ServingMetrics(
            self.watcher,
            self.log,
            self.shadow.stats,
            workers(settings.serving.serving_workers),
            self.live_drift,
        )
        self.bodies = Bodies(
            settings.serving.serving_max_body_bytes, settings.serving.serving_max_rows
        )
        self.explaining = 0  # explanations running; only the event loop changes it
        self.explainers = Explainers()  # built per version as it loads (see _swapped)
        key = settings.serving.serving_api_key
        self.api_key = key.get_secret_value().encode() if key is not None else None

    def start(self) -> None:
        """Start the background work (the app's lifespan)."""
        self.log.start()
        self.watcher.start()
        self.shadow.start()
        self.live_drift.start()
        self.metrics.start()

    async def first_load(self) -> None:
        """Wait until the watcher's first load has finished or failed, at most
        ``serving_first_load_s``.

        The lifespan awaits this before the worker takes requests: uvicorn's workers share one
        listening socket and a worker accepts from it as soon as its startup returns, so a worker
        still loading would answer 503 to requests the others could answer, after /ready had
        said 200. Past the bound, or after a failure, the worker starts anyway and answers 503
        with the reason until a model loads: failing the startup would make uvicorn stop the
        whole server, and /health, /ready's reason and a later recovery of the registry are worth
        more than a server that is down.
        """
        bound = self.settings.serving.serving_first_load_s
        deadline = time.monotonic() + bound
        # Looked at every 50 ms rather than waited for in a thread: a shutdown during the wait
        # cancels this at once, where a thread blocked on the event would hold the loop's exit.
        while not self.watcher.settled.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(FIRST_LOAD_CHECK_S)
        if not self.watcher.settled.is_set():
            logger.warning(
                "no model after %.0fs; taking requests (503 until one loads): %s",
                bound,
                self.watcher.unavailable_reason(),
            )

    def stop(self) -> None:
        """Stop it: the shadow and the watcher first, then the log's last flush (bounded by
        ``serving_shutdown_s``), then the metrics' last publication."""
        self.shadow.stop()
        self.live_drift.stop()
        self.watcher.stop()
        self.log.stop()
        self.metrics.stop()

    def explain(self, served: ServedModel, listing: Listing, price: float) -> Explanation:
        """One explanation (in a worker thread: it may wait for the version's explainer)."""
        return explain_listing(served, listing, self.explainers, price)

    def _swapped(self, served: ServedModel) -> None:
        info = served.info
        self.metrics.model_swapped(info.name, info.version, info.alias)
        # The explainer is built now, in its own thread (neither the watcher's, which keeps
        # polling, nor the event loop), so SHAP's import (~5 s, ~100 MB per worker) is paid at
        # the first load rather than at the first /explain: there it held the first
        # explanations' slots for seconds while every other was refused. /ready does not wait
        # for it: /predict never needs SHAP.
        loaded = [m for m in (self.watcher.current, self.watcher.previous) if m is not None]
        self.explainers.prepare(served, loaded)
        # What the load allocated stays until the next swap: out of the collector's walks.
        heap.settle(f"{info.name} version {info.version} loaded")

    def unavailable(self) -> RequestRefused:
        """The 503 of a request that came before any model was loaded (the reason is told)."""
        return RequestRefused(503, self.watcher.unavailable_reason())

    def not_finite(
        self, served: ServedModel, rows: list[int], listings: Sequence[Listing]
    ) -> RequestRefused:
        """The 503 of a model that predicted NaN or infinity: such a price is never served."""
        info = served.info
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        logger.error("%s version %s predicted non-finite prices", info.name, info.version)
        self.metrics.non_finite.inc(len(rows))
        return RequestRefused(
            503,
            f"{info.name} version {info.version} predicted no finite price for "
            f"listing {shown} (of this request): not served",
            listings=listings,
            served=served,
        )

    def refused(self, refusal: RequestRefused, logged: LoggedRequest | None) -> Response:
        """The response of a refusal; ended like any logged request when ``logged``."""
        response = refusal.response()
        if logged is None:  # /model: a lookup, not an inference: no log row, no request id
            return response
        return self.finish(logged, response, refusal.listings, None, refusal.served)

    def finish(
        self,
        logged: LoggedRequest,
        response: Response,
        listings: Sequence[Listing] | None = None,
        predictions: list[float] | None = None,
        served: ServedModel | None = None,
    ) -> Response:
        """End a logged request: its latency in the metrics, its entry in the inference log
        (the body when refused before its listings, else the listings and prices), the shadow
        offered what /predict priced, and the ``X-Request-ID`` it is logged under."""
        seconds = time.perf_counter() - logged.started
        self.metrics.observe(logged.endpoint, response.status_code, seconds)
        refused = listings is None
        body = logged.body
        if refused:  # only a prefix: a refused body may be as large as the limit allows
            body = body[:LOGGED_BODY_BYTES]
        entry = Entry(
            endpoint=logged.endpoint,
            status_code=response.status_code,
            requested_at=logged.requested_at,
            latency_ms=seconds * 1000.0,
            listings=listings or (),
            predictions=predictions,
            model_name=served.info.name if served else None,
            model_version=served.info.version if served else None,
            body=body.decode("utf-8", "replace") if refused else None,
        )
        self.log.record(entry)
        if logged.endpoint == "predict" and predictions is not None:
            self.shadow.offer(entry)
        # The id under which the request is logged: what `tasador lineage --request` takes.
        response.headers[REQUEST_ID_HEADER] = str(entry.request_id)
        return response
