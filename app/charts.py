"""Figures of the UI (matplotlib ``Figure`` objects: no pyplot state shared between sessions)."""

from __future__ import annotations

import math
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

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


def waterfall(explanation: dict[str, Any], top: int = 8) -> Figure:
    """SHAP waterfall in dollars on a log axis: from the model's base price, each field
    multiplies the price by exp(its contribution), ending at the prediction."""
    contributions = explanation["contributions"]
    rows = [
        (f"{c['feature']} = {_shown(c['value'])}", c["contribution"]) for c in contributions[:top]
    ]
    rest = contributions[top:]
    if rest:
        rows.append((f"{len(rest)} other fields", sum(c["contribution"] for c in rest)))
    fig = Figure(figsize=(8, 0.55 * len(rows) + 1.6))
    ax = fig.subplots()
    level = explanation["base_value"]
    for i, (_, contribution) in enumerate(rows):
        start, end = math.exp(level), math.exp(level + contribution)
        ax.barh(i, end - start, left=start, color=UP if contribution > 0 else DOWN, height=0.6)
        ax.annotate(
            f"x{math.exp(contribution):.2f}",
            (max(start, end), i),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
        level += contribution
    ax.axvline(explanation["base_price"], color="grey", linestyle=":", linewidth=1)
    ax.axvline(explanation["prediction"], color="black", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: dollars(x)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.invert_yaxis()
    label = (
        f"price: base {dollars(explanation['base_price'])} (dotted) -> "
        f"prediction {dollars(explanation['prediction'])} (dashed)"
    )
    ax.set_xlabel(label.replace("$", r"\$"))  # two "$" would start matplotlib's math mode
    ax.set_title("Why this price (SHAP): what each field multiplies the price by", fontsize=10)
    fig.tight_layout()
    return fig
