"""Follow the production alias: load a new version off the request path, swap it in at once.

A watcher thread asks the registry every ``serving_poll_s`` which version the alias names.
When it changes, the thread downloads and prepares that version while requests keep being
answered by the current one, then replaces ``current`` in one assignment. A request reads
``current`` once, at its start, so a request in flight finishes on the model it started with
and no request ever sees a half-loaded model.

Failures never take the served model away: an unreachable registry, a version that fails to
load, or an alias that disappears leave the current model serving, and :class:`RegistryStatus`
says what happened (``GET /ready``). Before any version was loaded, requests get a 503 whose
message tells which of those it is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from experiments import registry
from serving import models
from serving.models import ServedModel
from tasador.core.config import Settings

logger = logging.getLogger(__name__)


@dataclass
class RegistryStatus:
    """What the last polls of the model registry found."""

    reachable: bool | None = None  # None: not asked yet
    checked_at: datetime | None = None  # last answer from the registry
    alias_version: str | None = None  # what the alias names there
    error: str | None = None  # why the last poll or load failed
    polls: int = 0  # polls finished so far


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


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
        self.status = RegistryStatus()
        self._load = load
        self._on_swap = on_swap
        self._client: MlflowClient | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while True:
            self.check()
            if self._stop.wait(self.settings.serving_poll_s):
                return

    def check(self) -> None:
        """One poll: ask the registry, load and swap if the alias moved."""
        try:
            self._check()
        finally:
            self.status.polls += 1

    def _check(self) -> None:
        try:
            if self._client is None:
                self._client = registry.connect(self.settings)
            version = registry.production_version(self._client, self.settings)
        except Exception as exc:
            if self.status.reachable is not False:  # once per outage, not per poll
                logger.warning("model registry unreachable, serving on: %s", exc)
            self.status.reachable = False
            self.status.error = f"model registry unreachable: {_short(exc)}"
            return
        if self.status.reachable is False:
            logger.info("model registry reachable again")
        self.status.reachable = True
        self.status.checked_at = datetime.now(UTC)
        self.status.alias_version = None if version is None else str(version.version)
        if version is None:
            self.status.error = (
                f"the registry has no {self.settings.model_name}@"
                f"{self.settings.production_alias} (no model promoted yet)"
            )
            return
        current = self.current
        if current is not None and current.info.version == str(version.version):
            self.status.error = None
            return
        try:
            loaded = self._load(self._client, self.settings, version)
        except Exception as exc:
            self.status.error = f"version {version.version} failed to load: {_short(exc)}"
            logger.exception("loading %s version %s", self.settings.model_name, version.version)
            return
        self.current = loaded
        self.status.error = None
        logger.info(
            "now serving %s version %s (%s)",
            loaded.info.name,
            loaded.info.version,
            loaded.info.scoring,
        )
        if self._on_swap is not None:
            self._on_swap(loaded)

    def unavailable_reason(self) -> str:
        """Why there is no model to answer with (for 503s)."""
        status = self.status
        name = f"{self.settings.model_name}@{self.settings.production_alias}"
        if status.reachable is None:
            return f"no model loaded yet: looking up {name} in the model registry"
        if status.error:
            return f"no model to serve: {status.error}"
        return f"no model loaded yet: loading {name} version {status.alias_version}"
