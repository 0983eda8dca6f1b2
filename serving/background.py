"""Work beside the requests: a named thread that ticks until it is stopped, then flushes once.

Serving runs five such loops: the registry watcher (serving.hot_swap), the challenger watcher and
the shadow scorer (serving.shadow), the inference log's writer (serving.inference_log) and the
metrics publisher (serving.metrics). They share one shape, kept here so each states only its
tick and its timings:

- ``tick`` runs every ``interval_s`` (first at once with ``tick_first``, else after one interval);
  ``wake()`` cuts the current wait short (the inference log's buffer is full);
- an error of one tick is logged and the next tick runs as usual: a bug, a database or a disk
  that fails once must not end the work for good;
- a tick that returns ``False`` (it could not do its work) is followed by ``backoff_s`` more;
- ``stop()`` ends the loop, whose thread then runs ``final`` once (the last write of a shutdown);
  it waits for that at most ``stop_timeout_s`` and says whether the thread ended. A tick stuck on
  a database that never answers cannot hold a shutdown longer: the thread is a daemon, and the
  caller decides what to do with the work it still holds (the inference log spools a copy).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class PeriodicLoop:
    """A named daemon thread calling ``tick`` every ``interval_s`` until :meth:`stop`."""

    name: str
    tick: Callable[[], object]
    interval_s: float
    _: KW_ONLY
    final: Callable[[], object] | None = None
    stop_timeout_s: float = 5.0
    tick_first: bool = False
    backoff_s: float = 0.0
    # One wake for the loop's life: a wake() before start() still shortens the first wait.
    _wake: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def started(self) -> bool:
        """``start()`` was called and ``stop()`` not since."""
        return self._thread is not None

    @property
    def alive(self) -> bool:
        """The thread runs (it survives every error of a tick)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        # Each run its own stop signal: a thread left behind by a stop that timed out stays
        # stopped when the loop is started again.
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stopping,), name=self.name, daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """Tick now rather than at the end of the current wait."""
        self._wake.set()

    def stop(self, timeout_s: float | None = None) -> bool:
        """End the loop and wait, at most ``timeout_s`` (default ``stop_timeout_s``), for its
        final pass; True if the thread has ended (or was not running)."""
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(self.stop_timeout_s if timeout_s is None else timeout_s)
        return not thread.is_alive()

    def _run(self, stopping: threading.Event) -> None:
        stopped = not self.tick_first and self._pause(self.interval_s, stopping)
        while not stopped:
            done = self._guarded(self.tick, "tick")
            if done is False and self.backoff_s > 0 and self._pause(self.backoff_s, stopping):
                break
            stopped = self._pause(self.interval_s, stopping)
        if self.final is not None:
            self._guarded(self.final, "final pass")

    def _pause(self, seconds: float, stopping: threading.Event) -> bool:
        """Wait ``seconds``, less when woken or stopped; True when the loop is to end."""
        self._wake.wait(seconds)
        # Cleared before the check: stop() sets the flag before it wakes, so a stop is never
        # missed between the two.
        self._wake.clear()
        return stopping.is_set()

    def _guarded(self, work: Callable[[], object], what: str) -> object:
        try:
            return work()
        except Exception:  # a bug must not end the loop for good: logged, the next tick runs
            logger.exception("%s: %s failed", self.name, what)
            return None
