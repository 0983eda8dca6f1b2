"""The UI's charts: the SHAP waterfall as an Altair chart the browser draws."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from app.charts import waterfall

EXPLANATION = {
    "base_value": math.log(300_000),
    "base_price": 300_000.0,
    "prediction": 300_000.0 * math.exp(0.4 - 0.1 + 0.05),
    "contributions": [
        {"feature": "house_size", "value": 2400.0, "contribution": 0.4},
        {"feature": "state", "value": "Texas", "contribution": -0.1},
        {"feature": "bed", "value": None, "contribution": 0.03},
        {"feature": "bath", "value": 2, "contribution": 0.02},
    ],
}


def test_the_waterfall_steps_from_the_base_price_to_the_prediction() -> None:
    spec = waterfall(EXPLANATION, top=2).to_dict()
    bars = spec["datasets"][spec["layer"][0]["data"]["name"]]
    assert [b["field"] for b in bars] == [
        "house_size = 2400",
        "state = Texas",
        "2 other fields",  # the rest, summed
    ]
    assert bars[0]["start"] == pytest.approx(EXPLANATION["base_price"])
    for before, after in pairwise(bars):
        assert after["start"] == pytest.approx(before["end"])  # each step starts where one ends
    assert bars[-1]["end"] == pytest.approx(EXPLANATION["prediction"])
    assert [b["change"] for b in bars] == ["raises", "lowers", "raises"]
    assert bars[0]["factor"] == f"x{math.exp(0.4):.2f}"
    assert spec["layer"][0]["encoding"]["x"]["scale"]["type"] == "log"
