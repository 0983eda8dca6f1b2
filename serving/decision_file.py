"""The alias decision the watchers of one state folder share: the leader lock and the file.

Used by the production watcher (serving.hot_swap, whose doc says how leading and following go)
and the challenger watcher (serving.shadow). A decision names what it was made for: the
tracking URI as :func:`registry_address` writes it (no credentials), the model and the alias,
so a server never follows a decision made for another registry or model.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from tasador.core.config import Settings
from tasador.core.errors import summary


def registry_address(uri: str) -> str:
    """``uri`` as a decision names it: comparable, and safe to write to a shared file.

    No user or password (a shared file is no place for secrets, and the same server reached
    with other credentials is the same registry), no query or fragment (they may carry a
    token), scheme and host in lower case (urlsplit lowers the host), no trailing slash.
    """
    parts = urlsplit(uri.strip())
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), "", ""))


def without_secrets(text: str, uri: str | None) -> str:
    """``text`` (a registry client's error, which quotes the URI it called) with ``uri`` as
    :func:`registry_address` writes it, and no trace of its password or query."""
    if not uri:
        return text
    parts = urlsplit(uri.strip())
    text = text.replace(uri.strip(), registry_address(uri))
    for secret in (parts.password, parts.query):
        if secret:
            text = text.replace(secret, "***")
    return text


def registry_error(exc: BaseException, settings: Settings) -> str:
    """What ``exc`` (from the registry, or a model's download from it) says, for /ready, /model
    and the shared file: its :func:`summary` without the registry's credentials."""
    return without_secrets(summary(exc), settings.mlflow.mlflow_tracking_uri)


@dataclass(frozen=True)
class MadeFor:
    """The registry, model and alias a decision is about."""

    tracking_uri: str | None  # as :func:`registry_address` writes it
    model_name: str | None
    alias: str | None

    @classmethod
    def of(cls, settings: Settings, alias: str) -> MadeFor:
        uri = settings.mlflow.mlflow_tracking_uri
        return cls(uri and registry_address(uri), settings.mlflow.model_name, alias)

    def __str__(self) -> str:
        if self.tracking_uri is None and self.model_name is None:
            return "an unnamed registry (a decision written by an older tasador)"
        return f"{self.tracking_uri} {self.model_name}@{self.alias}"


@dataclass(frozen=True)
class Decision:
    """What the leader found in the registry, as every worker reads it from the shared file."""

    reachable: bool
    version: str | None  # what the alias names (None: no such alias, or not reachable)
    error: str | None  # the registry's problem, when there is one
    checked_at: str  # ISO time of the poll
    written_at: float  # time.time() of the write
    # What it was made for (see MadeFor); None in a file written before decisions named it.
    tracking_uri: str | None = None
    model_name: str | None = None
    alias: str | None = None

    @property
    def made_for(self) -> MadeFor:
        return MadeFor(self.tracking_uri, self.model_name, self.alias)


class SharedDecision:
    """The leader lock and the decision file of the watchers of one state folder."""

    def __init__(self, folder: Path, made_for: MadeFor) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.lock_path = folder / "watcher.lock"
        self.path = folder / "alias.json"
        self.made_for = made_for
        self._lock: IO[bytes] | None = None

    @property
    def leading(self) -> bool:
        return self._lock is not None

    def try_lead(self) -> bool:
        """Take the leader lock if no other watcher holds it; True while this one holds it."""
        if self._lock is None:
            handle = self.lock_path.open("ab")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
            self._lock = handle
        return True

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def write(self, reachable: bool, version: str | None, error: str | None) -> None:
        """Share what the registry said, stamped with the time and what it was made for."""
        now, made_for = datetime.now(UTC).isoformat(), asdict(self.made_for)
        decision = Decision(reachable, version, error, now, time.time(), **made_for)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(asdict(decision)))
        os.replace(temporary, self.path)

    def foreign(self, decision: Decision) -> str | None:
        """Why ``decision`` is not for this server (None: it is), in words for ``/ready``."""
        if decision.made_for == self.made_for:
            return None
        return (
            f"the alias decision in {self.folder} was made for {decision.made_for}, "
            f"not this server's {self.made_for}"
        )

    def read(self) -> Decision | None:
        try:
            return Decision(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return None  # not written yet (or by an incompatible version): wait for the next
