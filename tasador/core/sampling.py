"""Reproducible sampling, in one place: every bounded sample in Tasador is drawn here."""

from __future__ import annotations

from typing import TypeVar

import pandas as pd

Rows = TypeVar("Rows", pd.DataFrame, pd.Series)


def at_most(rows: Rows, max_rows: int, seed: int = 0, keep_order: bool = False) -> Rows:
    """At most ``max_rows`` of ``rows``, drawn without replacement with a fixed seed; ``rows``
    itself when it is small enough. ``keep_order`` returns the sample in its original order."""
    if max_rows <= 0:
        raise ValueError("max_rows must be positive")
    if len(rows) <= max_rows:
        return rows
    drawn = rows.sample(n=max_rows, random_state=seed)
    return drawn.sort_index() if keep_order else drawn
