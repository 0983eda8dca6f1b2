"""Charts of the UI: altair, drawn by the browser (the UI installs no plotting library)."""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import pandas as pd

UP, DOWN = "#d6604d", "#4393c3"


def dollars(value: float) -> str:
    """A price in short form: $1.25M, $350k or $800."""
    if value >= 1e6:
        return f"${value / 1e6:.2f}M"
    return f"${value / 1e3:.0f}k" if value >= 1e3 else f"${value:.0f}"


def _shown(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def waterfall(explanation: dict[str, Any], top: int = 8) -> alt.LayerChart:
    """SHAP waterfall in dollars on a log axis: from the model's base price, each field
    multiplies the price by exp(its contribution), ending at the prediction."""
    contributions = explanation["contributions"]
    rows = [
        (f"{c['feature']} = {_shown(c['value'])}", c["contribution"]) for c in contributions[:top]
    ]
    rest = contributions[top:]
    if rest:
        rows.append((f"{len(rest)} other fields", sum(c["contribution"] for c in rest)))
    steps = []
    level = explanation["base_value"]
    for order, (label, contribution) in enumerate(rows):
        start, end = math.exp(level), math.exp(level + contribution)
        steps.append(
            {
                "order": order,
                "field": label,
                "start": start,
                "end": end,
                "right": max(start, end),  # where the factor is written
                "factor": f"x{math.exp(contribution):.2f}",
                "change": "raises" if contribution > 0 else "lowers",
                "from": dollars(start),
                "to": dollars(end),
            }
        )
        level += contribution
    frame = pd.DataFrame(steps)
    # The fields top to bottom in the order the price goes through them.
    field = alt.Y("field:N", sort=alt.EncodingSortField("order"), title=None)
    price = alt.X(
        "start:Q",
        scale=alt.Scale(type="log", zero=False),
        # Vega's d3 format: "$.3~s" gives $350k, $1.25M (dollars() in the tooltips).
        axis=alt.Axis(format="$.3~s"),
        title=(
            f"price: base {dollars(explanation['base_price'])} (dotted) -> "
            f"prediction {dollars(explanation['prediction'])} (dashed)"
        ),
    )
    bars = (
        alt.Chart(frame)
        .mark_bar(height=14)
        .encode(
            x=price,
            x2="end:Q",
            y=field,
            color=alt.Color(
                "change:N",
                scale=alt.Scale(domain=["raises", "lowers"], range=[UP, DOWN]),
                legend=None,
            ),
            tooltip=["field:N", "factor:N", "from:N", "to:N"],
        )
    )
    factors = (
        alt.Chart(frame)
        .mark_text(align="left", dx=4, fontSize=11)
        .encode(x="right:Q", y=field, text="factor:N")
    )
    base, prediction = (
        alt.Chart(pd.DataFrame({"price": [explanation[key]]}))
        .mark_rule(color="black", strokeDash=dash)
        .encode(x="price:Q")
        for key, dash in (("base_price", [2, 2]), ("prediction", [6, 3]))
    )
    return alt.LayerChart(
        layer=[bars, factors, base, prediction],
        title="Why this price (SHAP): what each field multiplies the price by",
        height=alt.Step(24),
    )


def log_ratio_histogram(histogram: pd.DataFrame) -> alt.LayerChart:
    """Shadow rows per bin of log(challenger / production) (``shadow_store.Disagreement``), with
    the ±10% band and agreement (0) marked."""
    bars = (
        alt.Chart(histogram)
        .mark_bar(color=DOWN)
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title="log(challenger / production)"),
            x2="bin_end:Q",
            y=alt.Y("rows:Q", title="live rows"),
            tooltip=[
                alt.Tooltip("bin_start:Q", format="+.3f"),
                alt.Tooltip("bin_end:Q", format="+.3f"),
                "rows:Q",
            ],
        )
    )
    band = pd.DataFrame({"low": [math.log(0.9)], "high": [math.log(1.1)]})
    within = alt.Chart(band).mark_rect(opacity=0.15, color=UP).encode(x="low:Q", x2="high:Q")
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="black").encode(x="x:Q")
    return alt.LayerChart(layer=[within, bars, zero])
