"""Charts of a retrain decision's evidence (altair, drawn by the browser): per-feature drift
against its limit, the largest category share moves, and the model-error ratio per batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd

STATISTICS = (("psi", "PSI", "psi"), ("ks_statistic", "KS D", "ks_min_statistic"))


def drift_table(evidence: dict[str, Any]) -> pd.DataFrame:
    """One row per (column, statistic): its value, the limit it is held to, whether it moved."""
    limits = evidence.get("thresholds", {})
    shifts = [
        *evidence.get("features", []),
        *([evidence["target"]] if evidence.get("target") else []),
    ]
    rows = [
        {
            "column": shift["column"],
            "statistic": label,
            "value": shift[key],
            "limit": limits.get(limit_key),
            "moved": bool(shift.get("moved")),
        }
        for shift in shifts
        for key, label, limit_key in STATISTICS
        if shift.get(key) is not None
    ]
    return pd.DataFrame(rows, columns=["column", "statistic", "value", "limit", "moved"])


def drift_chart(table: pd.DataFrame) -> alt.HConcatChart:
    """PSI and KS bars per column, each with its limit as a dashed red line."""
    panels = []
    for _, label, _ in STATISTICS:
        part = table[table["statistic"] == label]
        if part.empty:
            continue
        bars = (
            alt.Chart(part)
            .mark_bar()
            .encode(
                x=alt.X("value:Q", title=label),
                y=alt.Y("column:N", sort="-x", title=None),
                color=alt.Color(
                    "moved:N",
                    scale=alt.Scale(domain=[False, True], range=["#4393c3", "#d6604d"]),
                ),
                tooltip=["column", "statistic", alt.Tooltip("value:Q", format=".3f"), "limit"],
            )
        )
        limit = (
            alt.Chart(part.head(1))
            .mark_rule(color="#b2182b", strokeDash=[4, 3], size=2)
            .encode(x="limit:Q")
        )
        panels.append((bars + limit).properties(width=300, title=f"{label} (limit dashed)"))
    return alt.hconcat(*panels)


def category_moves(evidence: dict[str, Any]) -> pd.DataFrame:
    """The categories whose share moved most, per column, before and in the batch."""
    rows = [
        {"column": s["column"], "category": m["category"], "side": side, "share": m[key]}
        for s in evidence.get("features", [])
        for m in s.get("largest_moves", [])
        for side, key in (("reference", "reference_share"), ("batch", "current_share"))
    ]
    return pd.DataFrame(rows, columns=["column", "category", "side", "share"])


def category_chart(moves: pd.DataFrame) -> alt.FacetChart:
    chart: alt.FacetChart = (
        alt.Chart(moves)
        .mark_bar()
        .encode(
            x=alt.X("share:Q", axis=alt.Axis(format="%")),
            y=alt.Y("category:N", title=None),
            yOffset="side:N",
            color=alt.Color("side:N", scale=alt.Scale(range=["#999999", "#d6604d"])),
            tooltip=["column", "category", "side", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(width=260, height=alt.Step(9))
        .facet(facet=alt.Facet("column:N", title=None), columns=3)
        .resolve_scale(y="independent")
    )
    return chart


def model_error_table(decided: Sequence[tuple[int, dict[str, Any]]]) -> pd.DataFrame:
    """Per batch: the production model's batch RMSLE over its holdout RMSLE, and the limit."""
    rows = [
        {
            "batch": batch_id,
            "ratio": evidence["model"]["ratio"],
            "limit": evidence.get("thresholds", {}).get("model_error_ratio"),
            "fired": bool(evidence["model"].get("fired")),
        }
        for batch_id, evidence in decided
        if evidence.get("model") and evidence["model"].get("ratio") is not None
    ]
    return pd.DataFrame(rows, columns=["batch", "ratio", "limit", "fired"])


def model_error_chart(table: pd.DataFrame) -> alt.LayerChart:
    bars = (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("batch:O"),
            y=alt.Y("ratio:Q", title="batch RMSLE / holdout RMSLE"),
            color=alt.Color(
                "fired:N", scale=alt.Scale(domain=[False, True], range=["#4393c3", "#d6604d"])
            ),
            tooltip=["batch", alt.Tooltip("ratio:Q", format=".3f"), "limit"],
        )
    )
    limit = (
        alt.Chart(table.head(1))
        .mark_rule(color="#b2182b", strokeDash=[4, 3], size=2)
        .encode(y="limit:Q")
    )
    layered: alt.LayerChart = bars + limit
    return layered
