"""Shadow challenger: ``@challenger`` prices a sample of live rows too, off the request path.

:class:`ChallengerWatcher` follows the ``challenger`` alias (the newest candidate, promoted or
not; experiments.leaderboard sets it) like :class:`serving.hot_swap.ModelWatcher` follows
production: in a thread of its own, one leader per state folder asks the registry every
``serving_poll_s`` and shares what it found in ``<state_dir>/serving/challenger/alias.json``;
the other workers read that file. It loads the named version with :func:`serving.models.load`
in that thread, and holds nothing while the alias names the version production serves (there
is nothing to compare then).

:class:`Shadow` takes over a ``/predict`` request after its answer is built
(:meth:`Shadow.offer`, O(1), never blocking): with probability ``serving_shadow_share`` the
request is queued for a background thread, which prices its rows with the challenger and writes
both prices and both versions to RAW's ``shadow_predictions`` (tasador.core.shadow_store), one
transaction per pass, keyed by the request id and row index of the request's
``inference_requests`` rows. Each worker process shadows only the requests it answered, and a
row written twice is stored once, so every shadowed row is stored exactly once whatever the
number of ``tasador serve --workers``.

Bounded: at most ``max_queued_rows`` rows wait (queued or unwritten while RAW is down); a request
that does not fit is dropped and counted (``tasador_shadow_dropped_rows``), never waited for. A
failure of the challenger or of RAW never reaches the request: it is counted and logged.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from experiments import registry
from serving import models
from serving.background import PeriodicLoop
from serving.batch import ListingColumns
from serving.decision_file import MadeFor, SharedDecision, registry_error
from serving.inference_log import Entry
from serving.models import ServedModel
from tasador.core import shadow_store
from tasador.core.config import Settings
from tasador.core.errors import summary

logger = logging.getLogger(__name__)

MAX_QUEUED_ROWS = 20_000  # rows waiting for the challenger or for RAW, per worker process
WRITE_ROWS = 5_000  # rows scored per pass before they are written (one transaction)
PASS_S = 0.5  # the scorer's pass interval: what is queued meanwhile is priced in one call
RETRY_S = 2.0  # after a failed write, the next attempt waits this long


def _joined(parts: list[ListingColumns]) -> ListingColumns:
    """Several requests' listings as one batch, column by column (no ``Listing`` per row)."""
    if len(parts) == 1:
        return parts[0]
    fields = parts[0].columns
    return ListingColumns(
        {f: [v for part in parts for v in part.columns[f]] for f in fields},
        sum(len(part) for part in parts),
    )


class ChallengerWatcher:
    """Keeps ``current``: the ``@challenger`` version loaded, unless production serves it."""

    def __init__(
        self,
        settings: Settings,
        production: Callable[[], ServedModel | None],
        load: Callable[[MlflowClient, Settings, ModelVersion], ServedModel] = models.load,
    ) -> None:
        self.settings = settings
        self.current: ServedModel | None = None
        self.named: str | None = None  # what the alias names (None: no challenger)
        self.error: str | None = None
        self._production = production
        self._load = load
        self._client: MlflowClient | None = None
        self.shared = SharedDecision(
            settings.state_dir / "serving" / "challenger",
            MadeFor.of(settings, registry.CHALLENGER_ALIAS),
        )
        self._started_at = time.time()
        self._next_poll = 0.0

    def tick(self) -> None:
        """Lead (poll the registry when due) or follow the leader's file; then act on it."""
        leading = self.shared.try_lead()
        decision = None if leading else self.shared.read()
        if decision is not None and decision.written_at < self._started_at:
            return
        # A decision made for another registry or model is ignored; this worker then polls
        # its own registry itself, as the production watcher does (serving.hot_swap).
        if leading or (decision is not None and self.shared.foreign(decision)):
            if time.monotonic() < self._next_poll:
                return
            self._next_poll = time.monotonic() + self.settings.serving.serving_poll_s
            try:
                found = registry.aliased_version(self._connect(), self.settings.mlflow, self._alias)
            except Exception as exc:
                self.error = f"model registry unreachable: {registry_error(exc, self.settings)}"
                return
            named = None if found is None else str(found.version)
            if leading:
                self.shared.write(True, named, None)
        elif decision is None or not decision.reachable:
            return
        else:
            named = decision.version
        self._act(named)

    @property
    def _alias(self) -> str:
        return registry.CHALLENGER_ALIAS

    def _connect(self) -> MlflowClient:
        if self._client is None:
            self._client = registry.connect(self.settings)
        return self._client

    def _act(self, named: str | None) -> None:
        self.named = named
        production = self._production()
        if named is None or (production is not None and production.info.version == named):
            self.current, self.error = None, None  # nothing to compare with
            return
        if self.current is not None and self.current.info.version == named:
            return
        try:
            client = self._connect()
            version = client.get_model_version(self.settings.mlflow.model_name, named)
            self.current = self._load(client, self.settings, version)
            self.error = None
            logger.info("shadow scoring with challenger version %s", named)
        except Exception as exc:  # production keeps serving; the shadow waits for a loadable one
            self.current = None
            self.error = (
                f"challenger version {named} failed to load: {registry_error(exc, self.settings)}"
            )
            logger.exception("loading challenger version %s", named)

    def stop(self) -> None:
        self.shared.release()


@dataclass
class ShadowStats:
    """Counters of shadow scoring since start (read by /ready and /metrics)."""

    queued_rows: int = 0  # waiting to be scored or written
    scored_rows: int = 0  # priced by the challenger
    written_rows: int = 0  # stored in RAW (new rows)
    dropped_rows: int = 0  # not shadowed: the queue was full (or shutdown came first)
    failed_rows: int = 0  # the challenger failed on them
    last_error: str | None = None


class Shadow:
    """The sample, the bounded queue and the thread that scores and writes (see the module)."""

    def __init__(
        self,
        settings: Settings,
        production: Callable[[], ServedModel | None],
        engine: Callable[[], sa.Engine],
        max_queued_rows: int = MAX_QUEUED_ROWS,
        watcher: ChallengerWatcher | None = None,
    ) -> None:
        self.share = settings.serving.serving_shadow_share
        self.poll_s = settings.serving.serving_poll_s
        self.watcher = watcher or ChallengerWatcher(settings, production)
        self.max_queued_rows = max_queued_rows
        self.stats = ShadowStats()
        self._engine = engine
        self._queue: deque[tuple[Entry, ServedModel]] = deque()
        self._pending: list[dict[str, Any]] = []  # scored, not written yet
        self._lock = threading.Lock()  # guards _queue and stats.queued_rows
        self._loops = [
            # Follows the @challenger alias like production's watcher does (serving.hot_swap).
            PeriodicLoop("challenger-watcher", self.watcher.tick, self.poll_s / 4, tick_first=True),
            # Passes every PASS_S, not one per request: requests are scored together, and a
            # busy server is not interrupted for each one. The last pass of a shutdown writes
            # what is scored, without scoring more.
            PeriodicLoop(
                "shadow-scorer",
                self.drain,
                PASS_S,
                final=lambda: self.drain(score=False),
                backoff_s=RETRY_S,
            ),
        ]
        self._random = random.Random()

    # --- request path -------------------------------------------------------------------------

    def offer(self, entry: Entry) -> None:
        """Maybe queue a priced /predict request for the challenger; never blocks or raises."""
        if self.share <= 0 or self._random.random() >= self.share:
            return
        challenger = self.watcher.current
        if challenger is None or challenger.info.version == entry.model_version:
            return
        with self._lock:
            if self.stats.queued_rows + entry.rows > self.max_queued_rows:
                self.stats.dropped_rows += entry.rows
                return
            self._queue.append((entry, challenger))
            self.stats.queued_rows += entry.rows

    # --- background -------------------------------------------------------------------------

    def start(self) -> None:
        if self.share <= 0:
            return  # off: no thread, no registry polls
        for loop in self._loops:
            loop.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is scored (within ``timeout_s``); what is still queued is dropped, counted."""
        for loop in self._loops:
            loop.stop(timeout_s)
        self.watcher.stop()
        with self._lock:
            left = sum(entry.rows for entry, _ in self._queue) + len(self._pending)
            self._queue.clear()
            self._pending = []
            self.stats.dropped_rows += left
            self.stats.queued_rows = 0

    def drain(self, score: bool = True) -> bool:
        """Score what is queued (up to ``WRITE_ROWS`` rows, in one call per challenger version),
        then write every scored row in one transaction. True if all was written (False: RAW
        refused; the rows stay, bounded, for the next pass)."""
        if score:
            taken: list[tuple[Entry, ServedModel]] = []
            with self._lock:
                rows = 0
                while self._queue and rows < WRITE_ROWS:
                    taken.append(self._queue.popleft())
                    rows += taken[-1][0].rows
            by_version: dict[str, list[tuple[Entry, ServedModel]]] = {}
            for item in taken:
                by_version.setdefault(item[1].info.version, []).append(item)
            for items in by_version.values():
                self._pending += self._score(items)
        if not self._pending:
            return True
        try:
            written = shadow_store.write(self._engine(), self._pending)
        except Exception as exc:
            self.stats.last_error = summary(exc)
            logger.warning("shadow rows not written, will retry: %s", exc)
            return False
        with self._lock:
            self.stats.written_rows += written
            self.stats.queued_rows -= len(self._pending)
            self._pending = []
            self.stats.last_error = None
        return True

    def _score(self, items: list[tuple[Entry, ServedModel]]) -> list[dict[str, Any]]:
        """Rows of ``items`` (requests for one challenger version), priced in one call: per-call
        overhead, not rows, is most of the cost of scoring single-listing requests."""
        challenger = items[0][1]
        listings = _joined([ListingColumns.of(entry.listings) for entry, _ in items])
        try:
            prices = challenger.scorer.predict(listings).tolist()
        except Exception as exc:
            logger.exception("challenger version %s failed to score", challenger.info.version)
            with self._lock:
                self.stats.failed_rows += len(listings)
                self.stats.queued_rows -= len(listings)
                self.stats.last_error = summary(exc)
            return []
        self.stats.scored_rows += len(listings)
        rows: list[dict[str, Any]] = []
        states = listings.columns["state"]
        for entry, _ in items:
            assert entry.predictions is not None and entry.model_version is not None  # offered so
            for i, served in enumerate(entry.predictions):
                price = prices[len(rows)]
                rows.append(
                    {
                        "request_id": entry.request_id,
                        "row_index": i,
                        "requested_at": entry.requested_at,
                        "model_name": challenger.info.name,
                        "production_version": entry.model_version,
                        "production_prediction": float(served),
                        "challenger_version": challenger.info.version,
                        "challenger_prediction": float(price) if math.isfinite(price) else None,
                        "state": states[len(rows)],
                    }
                )
        return rows

    # --- what it says -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The shadow's state for ``GET /ready``."""
        current = self.watcher.current
        return {
            "share": self.share,
            "challenger_version": current.info.version if current else None,
            "alias_version": self.watcher.named,
            "error": self.watcher.error or self.stats.last_error,
            "queued_rows": self.stats.queued_rows,
            "scored_rows": self.stats.scored_rows,
            "written_rows": self.stats.written_rows,
            "dropped_rows": self.stats.dropped_rows,
        }
