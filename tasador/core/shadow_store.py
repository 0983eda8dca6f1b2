"""Shadow prices in RAW: how the @challenger would have priced the rows production served.

Serving (serving.shadow) writes rows of :data:`tasador.core.tables.raw.shadow_predictions`
with :func:`write`; the promotion gate counts them (:func:`count`) and the model-change report
and the Models page read one summary of how the two versions disagree (:func:`disagreement`),
computed in SQL so it costs the same memory for a thousand rows as for ten million.

Disagreement is measured as ``log(challenger / production)`` per row: 0 is agreement, +0.1 a
challenger about 10% higher; "within ±10%" is a challenger price between 0.9 and 1.1 times
production's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from tasador.core import db
from tasador.core.tables.raw import shadow_predictions

HISTOGRAM_BINS = 40
HISTOGRAM_LIMIT = 1.0  # log ratios beyond ±1 (a factor e) land in the outermost bins
TOP_STATES = 10
WITHIN = 0.10  # "agrees": the challenger within ±10% of production


COLUMNS = tuple(c.name for c in shadow_predictions.columns)


def write(engine: sa.Engine, rows: Sequence[dict[str, Any]]) -> int:
    """Insert ``rows`` in one transaction; rows already stored (same request and row) are
    skipped. Returns how many were new.

    COPY into a temporary table, then one ``INSERT ... ON CONFLICT``: a multi-row INSERT built
    by SQLAlchemy cost ~0.5 ms of CPU per row (292 ms for 600), in the serving worker whose
    requests it delays."""
    if not rows:
        return 0

    def send(copy: Any) -> None:
        for row in rows:
            copy.write_row([row[c] for c in COLUMNS])

    with engine.begin() as conn:
        return db.copy_new_rows(conn, "shadow_predictions", COLUMNS, "request_id, row_index", send)


def _of(model_name: str, challenger: str, production: str | None) -> list[Any]:
    table = shadow_predictions.c
    where = [table.model_name == model_name, table.challenger_version == challenger]
    if production is not None:
        where.append(table.production_version == production)
    return where


def count(engine: sa.Engine, model_name: str, challenger: str, production: str | None) -> int:
    """Rows the challenger version scored next to ``production`` (None: next to any version)."""
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).where(*_of(model_name, challenger, production))
        return int(conn.execute(query).scalar_one())


@dataclass(frozen=True)
class Disagreement:
    """How a challenger priced live rows against production (both prices positive, finite)."""

    model_name: str
    challenger_version: str
    production_version: str
    rows: int  # rows compared
    not_compared: int  # scored rows without a positive finite challenger price
    within: float | None  # share of compared rows within ±WITHIN (None: no rows)
    median_log_ratio: float | None
    p05_log_ratio: float | None
    p95_log_ratio: float | None
    histogram: pd.DataFrame  # bin_start, bin_end, rows: log ratios clipped to ±HISTOGRAM_LIMIT
    by_state: pd.DataFrame  # state, rows, mean_log_ratio, mean_abs_log_ratio, within

    def sentence(self) -> str:
        """The summary in words (report and Models page)."""
        head = (
            f"Challenger version {self.challenger_version} against production version "
            f"{self.production_version}"
        )
        if not self.rows:
            return f"{head}: no shadow rows compared yet."
        assert self.within is not None and self.median_log_ratio is not None
        factor = math.exp(self.median_log_ratio)
        return (
            f"{head} on {self.rows:,} live rows: {self.within:.1%} priced within "
            f"±{WITHIN:.0%} of production; median ratio challenger/production {factor:.3f} "
            f"(log ratio 5th-95th percentile {self.p05_log_ratio:+.3f} to "
            f"{self.p95_log_ratio:+.3f})"
            + (f"; {self.not_compared:,} rows without a finite price" if self.not_compared else "")
            + "."
        )


# The pair's shadow rows, and those both models priced finite and positive: their log ratio.
_COMPARED = """
    WITH pair AS (
        SELECT state, challenger_prediction AS c, production_prediction AS p
        FROM shadow_predictions
        WHERE model_name = :model AND challenger_version = :challenger
          AND production_version = :production
    ), compared AS (
        SELECT state, ln(c / p) AS r, (c / p BETWEEN :low AND :high) AS agrees
        FROM pair WHERE c > 0 AND p > 0 AND c < 'Infinity'::float8
    )
"""
_OVERALL = """
    SELECT (SELECT count(*) FROM pair) AS scored, count(*) AS rows,
           avg(agrees::int)::float8 AS within,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY r) AS median,
           percentile_cont(0.05) WITHIN GROUP (ORDER BY r) AS p05,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY r) AS p95
    FROM compared
"""
# Ratios beyond the limit fall in the outer bins.
_BINS = """
    SELECT least(width_bucket(greatest(least(r, :limit), -:limit),
                              -:limit, :limit, :bins), :bins) AS bin, count(*) AS n
    FROM compared GROUP BY 1
"""
_STATES = """
    SELECT coalesce(state, '(none)') AS state, count(*) AS rows,
           avg(r) AS mean_log_ratio, avg(abs(r)) AS mean_abs_log_ratio,
           avg(agrees::int)::float8 AS within
    FROM compared GROUP BY 1
    ORDER BY mean_abs_log_ratio DESC, state LIMIT :top
"""
_STATE_TYPES = {"rows": int, "mean_log_ratio": float, "mean_abs_log_ratio": float, "within": float}


def _histogram(counts: dict[int, int], bins: int, limit: float) -> pd.DataFrame:
    """Rows per bin of the log ratio over [-limit, limit] (``counts`` by 1-based bin)."""
    width = 2 * limit / bins
    return pd.DataFrame(
        {
            "bin_start": [-limit + i * width for i in range(bins)],
            "bin_end": [-limit + (i + 1) * width for i in range(bins)],
            "rows": [int(counts.get(i + 1, 0)) for i in range(bins)],
        }
    )


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def disagreement(
    engine: sa.Engine,
    model_name: str,
    challenger: str,
    production: str,
    bins: int = HISTOGRAM_BINS,
    limit: float = HISTOGRAM_LIMIT,
    top_states: int = TOP_STATES,
) -> Disagreement:
    """The disagreement of ``challenger`` with ``production`` on the shadow rows of the pair:
    overall figures, a histogram of the log ratio, and the ``top_states`` states that disagree
    most (largest mean absolute log ratio first)."""
    params = {
        "model": model_name,
        "challenger": challenger,
        "production": production,
        "low": 1.0 - WITHIN,
        "high": 1.0 + WITHIN,
        "limit": limit,
        "bins": bins,
        "top": top_states,
    }

    def query(select: str) -> sa.CursorResult[Any]:
        return conn.execute(sa.text(_COMPARED + select), params)

    with engine.connect() as conn:
        overall = query(_OVERALL).mappings().one()
        counts = {int(row.bin): int(row.n) for row in query(_BINS)}
        states = pd.DataFrame(query(_STATES).mappings().all(), columns=["state", *_STATE_TYPES])
    return Disagreement(
        model_name=model_name,
        challenger_version=challenger,
        production_version=production,
        rows=int(overall["rows"]),
        not_compared=int(overall["scored"]) - int(overall["rows"]),
        within=_number(overall["within"]),
        median_log_ratio=_number(overall["median"]),
        p05_log_ratio=_number(overall["p05"]),
        p95_log_ratio=_number(overall["p95"]),
        histogram=_histogram(counts, bins, limit),
        by_state=states.astype(_STATE_TYPES),
    )
