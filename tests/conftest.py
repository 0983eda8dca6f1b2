"""The root of the suite: the shared fixtures (plugins in ``tests/fixtures``, registered here
once), the markers given by what a test starts, and a guard that no server outlives the session.

Markers (``make test-fast`` leaves these out; ``make test`` runs everything):
``server`` starts a server (MLflow, moto, the prediction API on uvicorn, the data API);
``airflow`` runs Airflow; ``browser`` drives Chromium; ``slow`` runs whole Python processes for
seconds (the CLI, a script).
"""

from __future__ import annotations

import sys

import pytest

# Helpers assert too (a fixture's setup, a candidate's registration): before they are imported,
# so their failures show values as a test's own asserts do.
pytest.register_assert_rewrite("tests.helpers")

from tasador.core.process import prepare_process  # noqa: E402  (after the rewrite hook)
from tests.helpers.processes import LeakGuard, describe, kill  # noqa: E402

prepare_process()  # the test session is an entry point like the `tasador` command
# Before any fixture runs: what runs already is not ours; what starts from here on is marked.
LEAK_GUARD = LeakGuard.begin()

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.listings",
    "tests.fixtures.live_drift",
    "tests.fixtures.mlflow",
    "tests.fixtures.search",
    "tests.fixtures.serving",
]

# A test that requests (directly or through other fixtures) one of these starts that kind of
# process; tests that start one themselves carry the marker in their module (``pytestmark``).
MARKER_OF_FIXTURE = {
    "s3_server": "server",
    "mlflow_server": "server",
    "local_airflow_server": "airflow",
    "airflow_home": "airflow",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by the fixtures it uses, so a new test is marked without an edit."""
    for item in items:
        for marker in {
            MARKER_OF_FIXTURE[f]
            for f in getattr(item, "fixturenames", ())
            if f in MARKER_OF_FIXTURE
        }:
            item.add_marker(marker)


@pytest.hookimpl(trylast=True)  # after the runner's hook has torn down the session fixtures
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the session if a server it started still runs; end those servers."""
    basetemp = session.config._tmp_path_factory._basetemp  # None when no test used tmp_path
    leaked = LEAK_GUARD.leaked([basetemp] if basetemp is not None else [])
    if not leaked:
        return
    lines = describe(leaked)
    kill(leaked)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "\n".join(["servers started by the tests were still running (now killed):", *lines])
    if reporter is not None:
        reporter.write_sep("=", "leaked processes", red=True)
        reporter.write_line(message)
    else:
        print(message, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
