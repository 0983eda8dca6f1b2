#!/usr/bin/env python3
"""Start optuna-dashboard on the storage named by ``TASADOR_OPTUNA_STORAGE_URL``.

The dashboard opens an RDB storage without creating its tables, so on a fresh database (before
the first study) it would crash in a loop; creating the schema first is idempotent and also
checks that the schema matches this Optuna version. The URL holds a password: it comes from the
environment, never from the image, and is put on no command line (anyone who can list processes
would read it there): optuna-dashboard's own command-line entry point runs in this process with
the URL handed to its argument parser only, so ``ps`` shows the arguments given here, which are
passed on to optuna-dashboard.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points

import optuna


def main(args: list[str]) -> int:
    url = os.environ.get("TASADOR_OPTUNA_STORAGE_URL")
    if not url:
        print("TASADOR_OPTUNA_STORAGE_URL is not set", file=sys.stderr)
        return 2
    optuna.storages.RDBStorage(url)  # creates the missing tables
    (script,) = entry_points(group="console_scripts", name="optuna-dashboard")
    # The process's command line (/proc/PID/cmdline) stays as started; only the parser sees this.
    sys.argv = ["optuna-dashboard", url, *args]
    script.load()()  # serves until stopped
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
