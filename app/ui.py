"""What every page shares: the settings, and failures shown as sentences, never tracebacks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from tasador.core.config import Settings, get_settings

logger = logging.getLogger("tasador.ui")
T = TypeVar("T")


def settings() -> Settings:
    """The settings every page uses (read once per process)."""
    return get_settings()


def failure(what: str, exc: BaseException) -> None:
    """Tell the person what is unavailable; the traceback goes to the server log only."""
    logger.warning("%s", what, exc_info=exc)
    lines = str(exc).strip().splitlines()
    reason = lines[0][:300] if lines else type(exc).__name__
    st.error(f"{what}. {reason}")


def read_or_stop(what: str, read: Callable[[], T], empty: str) -> T:
    """What a page cannot do without: on failure say so, when there is nothing yet say
    ``empty``; in both cases the page ends there."""
    try:
        found = read()
    except Exception as exc:
        failure(what, exc)
        st.stop()
    if not found:
        st.info(empty)
        st.stop()
    return found
