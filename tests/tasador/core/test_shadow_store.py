"""Shadow prices in RAW: idempotent writes, the gate's count, the disagreement on known rows."""

from __future__ import annotations

import math

import pytest

from tasador.core import db, shadow_store
from tasador.core.config import Settings
from tests.helpers.shadow import rows


def test_written_once_counted_and_summarized(settings: Settings) -> None:
    engine = db.engine("raw", settings.databases)
    texas = rows([1.0, 1.05, 0.95, 1.2], "Texas")  # 3 of 4 within ±10%
    ohio = rows([2.0, 2.0], "Ohio")  # the challenger doubles: far off
    broken = rows([float("nan")], "Utah")  # no finite challenger price: not compared
    other_pair = rows([1.0], "Texas", challenger="3")
    assert shadow_store.write(engine, texas + ohio + broken + other_pair) == 8
    assert shadow_store.write(engine, texas) == 0  # written again: stored once
    assert shadow_store.count(engine, "m", "2", "1") == 7
    assert shadow_store.count(engine, "m", "2", None) == 7
    assert shadow_store.count(engine, "m", "2", "9") == 0

    found = shadow_store.disagreement(engine, "m", "2", "1", bins=4, limit=1.0)
    assert (found.rows, found.not_compared) == (6, 1)
    assert found.within == pytest.approx(3 / 6)
    logs = sorted(math.log(r) for r in [1.0, 1.05, 0.95, 1.2, 2.0, 2.0])
    assert found.median_log_ratio == pytest.approx((logs[2] + logs[3]) / 2)
    # Bins of width 0.5 over [-1, 1]: 0.95 in [-0.5, 0); 1, 1.05, 1.2 in [0, 0.5); ln 2 above.
    assert found.histogram["rows"].tolist() == [0, 1, 3, 2]
    assert found.histogram["bin_start"].tolist() == [-1.0, -0.5, 0.0, 0.5]
    assert found.by_state["state"].tolist() == ["Ohio", "Texas"]  # largest disagreement first
    ohio_row = found.by_state.iloc[0]
    assert ohio_row["rows"] == 2 and ohio_row["mean_log_ratio"] == pytest.approx(math.log(2))
    assert ohio_row["within"] == 0.0
    assert "50.0% priced within ±10%" in found.sentence()
    assert "1 rows without a finite price" in found.sentence()


def test_no_rows_is_said(settings: Settings) -> None:
    found = shadow_store.disagreement(db.engine("raw", settings.databases), "m", "5", "4")
    assert found.rows == 0 and found.within is None and found.by_state.empty
    assert int(found.histogram["rows"].sum()) == 0
    assert found.sentence().endswith("no shadow rows compared yet.")
