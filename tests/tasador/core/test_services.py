"""Helper processes end with everything they started."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from tasador.core import services

# A command that leaves a child behind when it exits (a worker it forgot to stop).
LEAVES_A_CHILD = [
    sys.executable,
    "-c",
    "import subprocess; print(subprocess.Popen(['sleep', '60']).pid)",
]


def test_a_command_run_in_its_own_group_leaves_no_process_behind(tmp_path):
    log = tmp_path / "out.log"
    with log.open("wb") as output:
        code = services.run_in_own_group(LEAVES_A_CHILD, dict(os.environ), output)
    assert code == 0
    child = int(log.read_text().strip())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_stopping_a_group_ends_its_members_too():
    process = subprocess.Popen(
        [*LEAVES_A_CHILD[:2], LEAVES_A_CHILD[2] + "; import time; time.sleep(60)"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    child = int(process.stdout.readline())
    services.stop_group(process, wait_s=5)
    assert process.returncode is not None
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    process.stdout.close()
