"""Promotion on evidence (experiments.gate): the paired bootstrap interval, the guards per state
and kind, and the median error, on holdouts whose errors the tests set.

Each model's log error per row is drawn here, so what the guards should conclude is known: a
model's prices are the true prices times ``exp(error)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from experiments import gate
from tasador.core.columns import TARGET
from tasador.core.metrics import rmsle

RULES: dict[str, Any] = {
    "margin": 0.01,
    "confidence": 0.95,
    "draws": 2_000,
    "limit": 0.10,
    "min_rows": 50,
}


def holdout(states: dict[str, int], land: int = 0, seed: int = 0) -> pd.DataFrame:
    """Listings with a price, per state the given number of rows; the first ``land`` rows are
    plots of land (no bed, bath or house size)."""
    rng = np.random.default_rng(seed)
    n = sum(states.values())
    frame = pd.DataFrame(
        {
            "state": np.repeat(list(states), list(states.values())),
            "bed": rng.integers(1, 6, n).astype(float),
            "bath": rng.integers(1, 4, n).astype(float),
            "house_size": rng.uniform(800, 4_000, n),
            TARGET: np.exp(rng.normal(12.5, 0.8, n)),
        }
    )
    frame.loc[: land - 1, ["bed", "bath", "house_size"]] = np.nan
    return frame


def priced(frame: pd.DataFrame, log_errors: np.ndarray) -> np.ndarray:
    return frame[TARGET].to_numpy() * np.exp(log_errors)


def test_a_clear_win_is_promoted() -> None:
    frame = holdout({"Texas": 1_200, "Ohio": 800}, land=300)
    rng = np.random.default_rng(1)
    production = rng.normal(0, 0.30, len(frame))
    challenger = 0.5 * production + rng.normal(0, 0.15, len(frame))  # about a third better

    evidence = gate.weigh(frame, priced(frame, challenger), priced(frame, production), **RULES)

    assert evidence.passed and evidence.guard == "evidence" and evidence.at_fault is None
    gain = 1 - evidence.challenger_rmsle / evidence.production_rmsle
    assert RULES["margin"] < evidence.low < gain < evidence.high
    assert evidence.challenger_rmsle == pytest.approx(
        rmsle(frame[TARGET], priced(frame, challenger))
    )
    assert {s.name for s in evidence.segments} == {"Texas", "Ohio", "land", "houses"}
    sentence = evidence.sentence()
    interval = f"95% interval of the improvement {evidence.low:+.1%} to {evidence.high:+.1%}"
    assert interval in sentence
    assert "beyond the 1% margin" in sentence
    assert "no state or kind worse by more than 10% (4 with at least 50 rows checked)" in sentence
    # Seeded: the same models on the same rows get the same interval.
    again = gate.weigh(frame, priced(frame, challenger), priced(frame, production), **RULES)
    assert (again.low, again.high) == (evidence.low, evidence.high)


def test_better_on_average_but_much_worse_for_one_state_is_refused() -> None:
    frame = holdout({"Texas": 1_000, "Ohio": 900, "Vermont": 100})
    rng = np.random.default_rng(2)
    production = rng.normal(0, 0.30, len(frame))
    challenger = rng.normal(0, 0.15, len(frame))
    vermont = (frame["state"] == "Vermont").to_numpy()
    challenger[vermont] = rng.normal(0, 0.60, vermont.sum())  # twice production's error there

    evidence = gate.weigh(frame, priced(frame, challenger), priced(frame, production), **RULES)

    assert evidence.low > RULES["margin"]  # the average alone would promote it
    assert not evidence.passed and evidence.guard == "segment"
    assert evidence.at_fault is not None and evidence.at_fault.name == "Vermont"
    assert evidence.at_fault.rows == 100 and evidence.at_fault.worse_by > 0.5
    assert evidence.segments[0] == evidence.at_fault  # worst first
    assert f"worse for Vermont (100 rows, RMSLE {evidence.at_fault.production_rmsle:.3f}" in (
        evidence.sentence()
    )
    table = evidence.segment_table()
    assert table["segment"].iloc[0] == "Vermont" and len(table) == 4  # 3 states and houses


def test_a_segment_with_too_few_rows_is_not_a_guard() -> None:
    frame = holdout({"Texas": 1_000, "Ohio": 900, "Vermont": 40})
    rng = np.random.default_rng(2)
    production = rng.normal(0, 0.30, len(frame))
    challenger = rng.normal(0, 0.15, len(frame))
    vermont = (frame["state"] == "Vermont").to_numpy()
    challenger[vermont] = rng.normal(0, 0.60, vermont.sum())

    evidence = gate.weigh(frame, priced(frame, challenger), priced(frame, production), **RULES)

    assert evidence.passed
    assert "Vermont" not in {s.name for s in evidence.segments}


def test_much_worse_on_land_is_refused() -> None:
    frame = holdout({"Texas": 1_000, "Ohio": 1_000}, land=200)
    rng = np.random.default_rng(3)
    production = rng.normal(0, 0.40, len(frame))
    challenger = rng.normal(0, 0.20, len(frame))
    challenger[:200] = rng.normal(0, 0.80, 200)  # the land rows

    evidence = gate.weigh(frame, priced(frame, challenger), priced(frame, production), **RULES)

    assert evidence.guard == "segment" and evidence.at_fault is not None
    assert evidence.at_fault.name == "land" and evidence.at_fault.rows == 200
    assert "worse for land (200 rows" in evidence.sentence()


def test_a_tiny_win_on_a_small_holdout_is_refused() -> None:
    frame = holdout({"Texas": 150, "Ohio": 150})
    rng = np.random.default_rng(4)
    production = rng.normal(0, 0.30, len(frame))
    # Another model of about the same quality: its errors follow production's only in part.
    challenger = 0.7 * production + rng.normal(0, 0.205, len(frame))

    evidence = gate.weigh(frame, priced(frame, challenger), priced(frame, production), **RULES)

    gain = 1 - evidence.challenger_rmsle / evidence.production_rmsle
    assert gain > RULES["margin"]  # the old rule (the point estimate) would promote it
    assert evidence.low < RULES["margin"] < evidence.high
    assert not evidence.passed and evidence.guard == "interval"
    assert evidence.sentence().endswith("not wholly beyond the 1% margin (too little evidence).")


def test_a_worse_median_error_is_refused() -> None:
    frame = holdout({"Texas": 1_000, "Ohio": 1_000})
    rng = np.random.default_rng(5)
    signs = rng.choice([-1.0, 1.0], len(frame))
    # Production: close on most listings, wild on one in twenty; the challenger: never wild,
    # but never as close. Its RMSLE is far lower, its typical listing's error higher.
    wild = rng.random(len(frame)) < 0.05
    production = signs * np.where(wild, 2.0, 0.05)
    challenger = signs * 0.15

    evidence = gate.weigh(frame, priced(frame, challenger), priced(frame, production), **RULES)

    assert evidence.low > RULES["margin"] and evidence.at_fault is None
    assert evidence.guard == "mdape" and not evidence.passed
    assert evidence.production_mdape < evidence.challenger_mdape
    assert "but its median error is worse (MdAPE 5.1% -> 13.9%)" in evidence.sentence()
