"""Live drift checks against a real registry, RAW and CLEAN: the requests served against the
production model's training rows, stored once per window, cited by the next decision."""

from __future__ import annotations

import threading

import pytest
from typer.testing import CliRunner

from datasource.generator import generate_listings
from tasador.cli import app
from tasador.core import db, live_drift_store
from tasador.core.config import Settings, get_settings, settings_env
from tasador.loop import decide, monitor
from tests.helpers.live_drift import OTHER_STATES, log_served, stored_checks


def test_traffic_like_training_raises_no_alarm(live: tuple[Settings, str]) -> None:
    settings, version = live
    log_served(settings, generate_listings(600, seed=11), version)
    outcome = monitor.check_live_drift(settings)
    assert outcome.stored and outcome.check is not None
    assert outcome.check.compared and not outcome.check.alarm, outcome.summary
    assert outcome.check.rows == 600  # the refused request is not a listing served
    assert outcome.summary.startswith("The live traffic is within limits")
    assert f"production version {version}" in outcome.summary
    [row] = stored_checks(settings)
    assert row.compared and not row.alarm and row.drift_share == 0.0


def test_traffic_from_other_states_alarms_naming_them(live: tuple[Settings, str]) -> None:
    settings, version = live
    log_served(settings, generate_listings(600, seed=12, states=OTHER_STATES), version)
    outcome = monitor.check_live_drift(settings)
    check = outcome.check
    assert check is not None and check.alarm
    assert "state" in {f.column for f in check.moved}
    assert outcome.summary.startswith("The live traffic moved")
    assert "state by PSI" in outcome.summary, outcome.summary
    assert check.drift_share is not None and check.drift_share > 0
    assert live_drift_store.latest(db.engine("raw", settings.databases), alarm=True) == check


def test_too_few_requests_say_so_and_wait_for_more(live: tuple[Settings, str]) -> None:
    settings, version = live
    log_served(settings, generate_listings(150, seed=13, states=OTHER_STATES), version)
    outcome = monitor.check_live_drift(settings)
    assert outcome.check is not None and not outcome.check.alarm
    assert "Not enough requests to compare (150 < 200" in outcome.summary
    assert outcome.check.drift_share is None
    # The watermark stays: the same 150 rows are read again with the next ones.
    log_served(settings, generate_listings(100, seed=14, states=OTHER_STATES), version)
    again = monitor.check_live_drift(settings)
    assert again.check is not None and again.check.rows == 250 and again.check.alarm
    first, second = stored_checks(settings)
    assert not first.compared and second.compared
    assert first.after_request_id == second.after_request_id == 0


def test_a_second_run_reads_only_new_requests(live: tuple[Settings, str]) -> None:
    settings, version = live
    log_served(settings, generate_listings(300, seed=15), version)
    first = monitor.check_live_drift(settings)
    assert first.stored and first.check is not None
    again = monitor.check_live_drift(settings)
    assert not again.stored and again.check is None
    assert again.summary == (
        f"no request served since request {first.check.through_request_id}: nothing new to compare"
    )
    log_served(settings, generate_listings(250, seed=16), version)
    third = monitor.check_live_drift(settings)
    assert third.check is not None and third.check.rows == 250
    assert third.check.after_request_id == first.check.through_request_id
    assert len(stored_checks(settings)) == 2


def test_concurrent_runs_count_each_request_once(live: tuple[Settings, str]) -> None:
    settings, version = live
    log_served(settings, generate_listings(400, seed=17), version)
    outcomes: list[monitor.Outcome] = []
    start = threading.Barrier(3)

    def run() -> None:
        start.wait()
        outcomes.append(monitor.check_live_drift(settings))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(outcomes) == 3
    assert sum(o.stored for o in outcomes) == 1
    [row] = stored_checks(settings)
    assert row.rows == 400


def test_the_next_decision_cites_the_live_alarm(
    live: tuple[Settings, str], production: tuple[Settings, dict[str, int]]
) -> None:
    settings, version = live
    log_served(settings, generate_listings(600, seed=18, states=OTHER_STATES), version)
    assert monitor.check_live_drift(settings).check is not None
    decision = decide.decide_batch(settings, production[1]["next"])
    assert "Also, since the last decision, the live traffic moved" in decision.reason
    assert "state by PSI" in decision.reason
    assert decision.evidence["live"]["through_request_id"] > 0


def test_the_monitor_command(live: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, version = live
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    log_served(settings, generate_listings(600, seed=19, states=OTHER_STATES), version)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        first = runner.invoke(app, ["monitor"])
        second = runner.invoke(app, ["monitor"])
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0, first.output
    [row] = stored_checks(settings)
    assert first.output.startswith(f"live drift: ALARM (600 requests; check {row.id})\n")
    assert row.summary in first.output and "state by PSI" in row.summary
    assert second.exit_code == 0, second.output
    assert "nothing new to compare" in second.output
