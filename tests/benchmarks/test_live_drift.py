"""benchmarks/live_drift.py, at a tiny size, against a real serving API, RAW, CLEAN and MLflow."""

from __future__ import annotations

import os
import subprocess
import sys

from tasador.core.config import Settings, settings_env
from tests.helpers import REPO
from tests.helpers.live_drift import stored_checks
from tests.helpers.serving import ready_version, running, wait_until


def test_the_script_sends_other_states_and_the_check_alarms(live: tuple[Settings, str]) -> None:
    settings, version = live
    with running(settings) as (url, _):
        wait_until(lambda: ready_version(url) == version, 120, "serving loads the version")
        env = {**os.environ, **settings_env(settings), "TASADOR_SERVING_API_URL": url}
        done = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "live_drift.py"), "--requests", "250"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = stored_checks(settings)
    assert row.rows == 250 and row.alarm
    assert "sent 250 listings from Alaska,Hawaii,Montana: 250 priced" in done.stdout
    assert f"live drift check {row.id}: 250 requests read, alarm True" in done.stdout
    assert row.summary in done.stdout
