"""Trial children start from the forkserver without running the parent's main script again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A main script that cannot run twice, like the `airflow` script in an Airflow task process
# (Airflow blocks its database URL there, so importing airflow again fails).
MAIN = """\
import os, sys
if os.environ.get("MAIN_RAN"):
    raise SystemExit("the parent's main script ran again in a child")
os.environ["MAIN_RAN"] = "1"
if __name__ == "__main__":
    sys.path.insert(0, {repo!r})
    from experiments import trial_process
    trial_process.warm_up()
    print("started")
"""


@pytest.mark.slow
def test_a_trial_child_does_not_run_the_parents_main_script(tmp_path):
    script = tmp_path / "main.py"
    script.write_text(MAIN.format(repo=str(REPO)))
    env = {k: v for k, v in os.environ.items() if k != "MAIN_RAN"}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "started"
    assert "ran again" not in result.stderr


# A task of Airflow's Celery worker: in a daemonic prefork pool child of billiard, which makes
# itself multiprocessing's current process (its flag and its kind of authkey).
DAEMONIC = """\
import sys
import billiard
sys.path.insert(0, {repo!r})
from experiments import trial_process

def task():
    trial_process.warm_up()

if __name__ == "__main__":
    child = billiard.Process(target=task, daemon=True)
    child.start()
    child.join()
    print(child.exitcode)
"""


@pytest.mark.slow
def test_a_celery_pool_process_starts_trial_children(tmp_path):
    script = tmp_path / "daemonic.py"
    script.write_text(DAEMONIC.format(repo=str(REPO)))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert result.stdout.strip() == "0", result.stderr[-2000:]
