#!/usr/bin/env python3
"""Start optuna-dashboard on the storage named by ``TASADOR_OPTUNA_STORAGE_URL``.

The dashboard opens an RDB storage without creating its tables, so on a fresh database (before
the first study) it would crash in a loop; creating the schema first is idempotent and also
checks that the schema matches this Optuna version. The URL holds a password: it comes from the
environment, never from the image. Arguments are passed on to optuna-dashboard.
"""

from __future__ import annotations

import os
import sys

import optuna


def main(args: list[str]) -> int:
    url = os.environ.get("TASADOR_OPTUNA_STORAGE_URL")
    if not url:
        print("TASADOR_OPTUNA_STORAGE_URL is not set", file=sys.stderr)
        return 2
    optuna.storages.RDBStorage(url)  # creates the missing tables
    os.execvp("optuna-dashboard", ["optuna-dashboard", url, *args])
    return 1  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
