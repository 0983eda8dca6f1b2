"""Serving starts with only what it needs: no Airflow, Streamlit, Optuna or Celery imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tasador.loop import dag_defaults
from tests.helpers.docker_scripts import AIRFLOW_INIT

HEAVY = ("airflow", "streamlit", "optuna", "optuna_dashboard", "celery", "flaml")
PROBE = """
import json, sys
import serving.api
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""


@pytest.mark.slow
def test_importing_the_serving_app_loads_no_training_airflow_or_ui_package() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not loaded & set(HEAVY), f"serving imports {sorted(loaded & set(HEAVY))}"


def test_airflow_init_creates_the_pool_the_dag_names() -> None:
    assert AIRFLOW_INIT.SEARCH_POOL == dag_defaults.SEARCH_POOL
