"""Follow the production alias: load a new version off the request path, swap it in at once.

A watcher thread per serving process keeps ``current``. When the version to serve changes, the
thread downloads and prepares it while requests keep being answered by the current one, then
replaces ``current`` in one assignment. A request reads ``current`` once, at its start, so a
request in flight finishes on the model it started with and no request ever sees a half-loaded
model.

One decision for every worker process: of the watchers sharing a state folder (the uvicorn
workers of one `tasador serve`), the one holding an exclusive lock on
``<state_dir>/serving/watcher.lock`` is the *leader*. Only it asks the registry which version
the alias names, every ``serving_poll_s``, and it writes what it found to
``<state_dir>/serving/alias.json`` (written whole, then renamed). The others *follow* that
file, reading it four times per poll interval, and load the version it names, so every worker
swaps to the same version within a poll interval (plus its own load) of the leader, and the
registry sees one poll per interval however many workers there are. A follower ignores
decisions written before it started (a file left by an earlier run). The lock is released by
the operating system when its holder exits, and every follower tries to take it at each of its
reads, so a worker that dies hands leadership on within a quarter of the poll interval.

A decision names what it was made for: the tracking URI (without credentials), the model and
the alias. A follower acts only on a decision made for its own; one made for another registry or
model (a leftover `tasador serve` configured with another MLflow address holding the lock) is
ignored, and ``status.ignored_decision`` says so in words (``/ready``).

Failures never take the served model away: an unreachable registry, a version that fails to
load, or an alias that disappears leave the current model serving, and :class:`RegistryStatus`
says what happened (``GET /ready``). Before any version was loaded, requests get a 503 whose
message tells which of those it is.

Validated swap: a loaded version answers nothing before it passes serving.validation (finite,
positive prices on the sample stored with it, RMSLE matching its registered holdout figure). A
version that fails is *refused*: the current one keeps serving, ``status.refused`` says which
version and why (``/ready``, ``/model``, ``/metrics``), and it is not loaded again while the
alias names it (the verdict would not change).

Instant rollback: the version served before the current one stays in memory (``previous``).
When the alias moves back to it, as ``tasador rollback`` does, it is swapped in without a
download or a new validation (it passed when first loaded); ``status.last_swap`` times it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from experiments import registry
from serving import models, validation
from serving.background import PeriodicLoop
from serving.decision_file import MadeFor, SharedDecision, registry_error
from serving.models import ServedModel
from tasador.core.config import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """A version the alias named that failed validation, and why."""

    version: str
    code: str  # serving.validation.Verdict.code: a metric label
    reason: str
    at: datetime


@dataclass(frozen=True)
class Swap:
    """The last swap: which version came in, from memory or loaded, and how long it took."""

    version: str
    from_memory: bool  # the previous version, kept loaded: no download, no validation
    seconds: float  # from the decision to serve it to ``current`` replaced
    at: datetime


@dataclass
class RegistryStatus:
    """What the last polls of the model registry found."""

    reachable: bool | None = None  # None: not asked yet
    checked_at: datetime | None = None  # last answer from the registry
    alias_version: str | None = None  # what the alias names there
    error: str | None = None  # why the last poll or load failed
    polls: int = 0  # polls (of the registry by a leader, of the decision by a follower)
    leader: bool = False  # this process polls the registry for every worker
    refused: Refusal | None = None  # the version the alias names, when it failed validation
    refusals: int = 0  # versions refused since start
    last_swap: Swap | None = None
    # Why the shared decision is not followed: it was made for another registry or model.
    ignored_decision: str | None = None


class ModelWatcher:
    """Polls the registry in a thread and swaps in the version the production alias names."""

    def __init__(
        self,
        settings: Settings,
        load: Callable[[MlflowClient, Settings, ModelVersion], ServedModel] = models.load,
        on_swap: Callable[[ServedModel], None] | None = None,
    ) -> None:
        self.settings = settings
        self.current: ServedModel | None = None
        self.previous: ServedModel | None = None  # served before ``current``, kept loaded
        self.status = RegistryStatus()
        self._load = load
        self._on_swap = on_swap
        self._client: MlflowClient | None = None
        # Reads the shared decision four times per poll interval: a follower takes over the
        # leader lock of a worker that died within a quarter of it (see the module doc).
        self._loop = PeriodicLoop(
            "model-watcher", self.tick, settings.serving.serving_poll_s / 4, tick_first=True
        )
        self.shared = SharedDecision(
            settings.state_dir / "serving", MadeFor.of(settings, settings.mlflow.production_alias)
        )
        self._started_at = time.time()
        self._next_poll = 0.0  # time.monotonic() of the leader's next registry poll
        self._refused: dict[str, Refusal] = {}  # by version: not loaded again
        # Set once the first look at the alias has an outcome: a model serves, or the status
        # says why none does. A worker takes no request before it (serving.service).
        self.settled = threading.Event()

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._loop.stop(timeout_s)
        self.shared.release()
        self.status.leader = False

    def tick(self) -> None:
        """Lead (poll the registry when due) or follow (read the leader's decision)."""
        if self.shared.try_lead():
            if not self.status.leader:
                logger.info("this worker (pid %d) polls the model registry", os.getpid())
                self.status.leader = True
            self.status.ignored_decision = None
            self._poll_when_due()
        else:
            self.follow()
        # A follower that found no decision yet has no outcome: it is not settled until the
        # leader shares one and it has loaded (or failed to load) the version named there.
        status = self.status
        if self.current is not None or status.error is not None or status.refused is not None:
            self.settled.set()

    def _poll_when_due(self) -> None:
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.settings.serving.serving_poll_s
            self.check()

    def check(self) -> None:
        """One poll of the registry: share what it says, load and swap if the alias moved."""
        try:
            self._check()
        finally:
            self.status.polls += 1

    def follow(self) -> None:
        """Act on the leader's latest decision (none yet, or an old one: wait)."""
        decision = self.shared.read()
        if decision is None or decision.written_at < self._started_at:
            self.status.polls += 1
            return
        ignored = self.shared.foreign(decision)
        if ignored is not None:
            # The leader serves another registry or model: its version numbers and its errors
            # are not this server's. This worker cannot lead while that process holds the
            # lock (it may run for days), and waiting would leave it unready or stale for as
            # long, so it polls its own registry itself, as a lone server would: one poll per
            # worker per interval instead of one per server, but every version it serves is
            # one its own registry's alias names. It writes nothing (the file is the lock
            # holder's); once it can take the lock, or the file names its registry again, it
            # leads or follows as usual.
            if ignored != self.status.ignored_decision:
                logger.warning("%s: this worker polls its registry itself", ignored)
            self.status.ignored_decision = ignored
            self._poll_when_due()
            return
        self.status.ignored_decision = None
        self.status.polls += 1
        if not decision.reachable:
            self.status.reachable = False
            self.status.error = decision.error
            return
        self.status.reachable = True
        self.status.checked_at = datetime.fromisoformat(decision.checked_at)
        try:
            if self._client is None:
                self._client = registry.connect(self.settings)
            version = (
                None
                if decision.version is None or self._serving(decision.version)
                else self._client.get_model_version(
                    self.settings.mlflow.model_name, decision.version
                )
            )
        except Exception as exc:
            self.status.error = f"model registry unreachable: {registry_error(exc, self.settings)}"
            return
        self._act(decision.version, version)

    def _serving(self, version: str) -> bool:
        return self.current is not None and self.current.info.version == version

    def _share(self, reachable: bool, version: str | None, error: str | None) -> None:
        if not self.shared.leading:  # polling alone beside another registry's leader
            return
        try:
            self.shared.write(reachable, version, error)
        except OSError as exc:  # the followers keep the last decision; this worker goes on
            logger.warning("could not share the alias decision: %s", exc)

    def _check(self) -> None:
        try:
            if self._client is None:
                self._client = registry.connect(self.settings)
            version = registry.production_version(self._client, self.settings)
        except Exception as exc:
            self.status.error = f"model registry unreachable: {registry_error(exc, self.settings)}"
            if self.status.reachable is not False:  # once per outage, not per poll
                logger.warning("%s; serving on", self.status.error)
            self.status.reachable = False
            self._share(False, None, self.status.error)
            return
        if self.status.reachable is False:
            logger.info("model registry reachable again")
        self.status.reachable = True
        self.status.checked_at = datetime.now(UTC)
        named = None if version is None else str(version.version)
        self._share(True, named, None)
        self._act(named, version)

    def _act(self, named: str | None, version: ModelVersion | None) -> None:
        """Serve what the alias names: nothing to do, an error to report, or a version to load."""
        self.status.alias_version = named
        if named is None:
            self.status.error = (
                f"the registry has no {self.settings.mlflow.model_name}@"
                f"{self.settings.mlflow.production_alias} (no model promoted yet)"
            )
            return
        if version is None or self._serving(named):
            self.status.error = None
            self.status.refused = None  # the alias left the refused version
            return
        refused = self._refused.get(named)
        if refused is not None:
            self.status.refused, self.status.error = refused, None
            return
        started = time.perf_counter()
        if self.previous is not None and self.previous.info.version == named:
            # Instant rollback: already downloaded, prepared and validated.
            loaded, from_memory = self.previous, True
        else:
            fresh = self._load_checked(version)
            if fresh is None:
                return
            loaded, from_memory = fresh, False
        self.previous, self.current = self.current, loaded
        self.status.last_swap = Swap(
            named, from_memory, time.perf_counter() - started, datetime.now(UTC)
        )
        self.status.error = None
        self.status.refused = None
        logger.info(
            "now serving %s version %s (%s; %s)",
            loaded.info.name,
            loaded.info.version,
            "kept in memory" if from_memory else loaded.info.validation,
            loaded.info.scoring,
        )
        if self._on_swap is not None:
            self._on_swap(loaded)

    def _load_checked(self, version: ModelVersion) -> ServedModel | None:
        """``version`` loaded and validated; None (and the status says why) when it is not."""
        assert self._client is not None  # connected to find ``version``
        try:
            return self._load(self._client, self.settings, version)
        except validation.Refused as exc:
            refusal = Refusal(exc.version, exc.verdict.code, str(exc), datetime.now(UTC))
            self._refused[refusal.version] = refusal
            self.status.refused, self.status.error = refusal, None
            self.status.refusals += 1
            serving = self.current.info.version if self.current else None
            logger.error("%s; still serving version %s", refusal.reason, serving)
        except Exception as exc:
            self.status.error = (
                f"version {version.version} failed to load: {registry_error(exc, self.settings)}"
            )
            logger.exception(
                "loading %s version %s", self.settings.mlflow.model_name, version.version
            )
        return None

    def refused_json(self) -> dict[str, str] | None:
        """The refused version for ``/ready``: version, code, reason, when."""
        refused = self.status.refused
        return None if refused is None else {**asdict(refused), "at": refused.at.isoformat()}

    def last_swap_json(self) -> dict[str, str | bool | float] | None:
        """The last swap for ``/ready``: version, from memory or not, milliseconds, when."""
        swap = self.status.last_swap
        if swap is None:
            return None
        return {
            "version": swap.version,
            "from_memory": swap.from_memory,
            "ms": round(swap.seconds * 1000, 3),
            "at": swap.at.isoformat(),
        }

    def unavailable_reason(self) -> str:
        """Why there is no model to answer with (for 503s)."""
        status = self.status
        name = f"{self.settings.mlflow.model_name}@{self.settings.mlflow.production_alias}"
        if status.reachable is None:
            reason = f"no model loaded yet: looking up {name} in the model registry"
        elif status.refused:
            reason = f"no model to serve: {status.refused.reason}"
        elif status.error:
            reason = f"no model to serve: {status.error}"
        else:
            reason = f"no model loaded yet: loading {name} version {status.alias_version}"
        if status.ignored_decision:
            reason += f" ({status.ignored_decision}: ignored)"
        return reason
