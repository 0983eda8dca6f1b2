"""Serving publishes the newest live drift check of RAW in /metrics, and keeps the last figures
it read while RAW cannot be reached."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from serving.hot_swap import ModelWatcher
from serving.inference_log import InferenceLog
from serving.live_drift import LiveDriftReader
from serving.metrics import ServingMetrics
from tasador.core import db
from tasador.core.config import Settings
from tests.helpers.live_drift import stored_check

DEAD_RAW = "postgresql://tasador:x@127.0.0.1:9/raw"  # nothing listens: refused at once


def scrape(metrics: ServingMetrics) -> dict[str, float]:
    lines = metrics.render().decode().splitlines()
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in lines)
        if name.startswith("tasador_live_drift_")
    }


def test_metrics_follow_the_newest_check_and_survive_raw_going_away(
    settings: Settings, tmp_path: Path
) -> None:
    raw: list[str] = [db.database_url("raw", settings.databases)]
    reader = LiveDriftReader(lambda: db.engine_for(raw[0]))
    log = InferenceLog(lambda: db.engine("raw", settings.databases), tmp_path / "spool", 100, 60)
    metrics = ServingMetrics(ModelWatcher(settings), log, live_drift=reader)

    reader.read()  # no check yet: the gauges exist, at 0 (the alert's query has its series)
    assert scrape(metrics) == {
        "tasador_live_drift_alarm": 0.0,
        "tasador_live_drift_share": 0.0,
        "tasador_live_drift_rows": 0.0,
        "tasador_live_drift_checked_timestamp_seconds": 0.0,
    }
    stored_check(settings, rows=300, fired=False, after=0)
    stored_check(settings, rows=500, fired=True, after=300)
    reader.read()
    seen = scrape(metrics)
    assert seen["tasador_live_drift_alarm"] == 1.0
    assert seen["tasador_live_drift_share"] == 1.0  # its one check fired
    assert seen["tasador_live_drift_rows"] == 500.0
    with db.engine("raw", settings.databases).connect() as conn:
        newest = conn.execute(sa.text("SELECT max(checked_at) FROM live_drift_checks")).scalar()
    assert seen["tasador_live_drift_checked_timestamp_seconds"] == newest.timestamp()

    raw[0] = DEAD_RAW  # RAW unreachable: the last figures stay
    reader.read()
    assert scrape(metrics) == seen
