#!/usr/bin/env python3
"""One-shot Airflow initialisation for the compose stack (service ``airflow-init``).

1. ``airflow db migrate`` creates or upgrades the metadata database (safe to repeat).
2. ``tasador db upgrade`` does the same for the RAW and CLEAN databases: the DAGs' tasks only
   read and write them, so their schema must be current before any task runs.
3. The admin's password goes from ``AIRFLOW_ADMIN_PASSWORD`` (``.env``) to the passwords file of
   Airflow's simple auth manager, so the login is the one the operator chose instead of a random
   one printed in the logs.

Every other Airflow service waits for this to exit 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

REQUIRED = (
    "AIRFLOW_ADMIN_USER",
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
)


def configuration_errors(env: Mapping[str, str]) -> list[str]:
    errors = [f"{name} is not set" for name in REQUIRED if not env.get(name)]
    if errors:
        return errors
    declared = {
        entry.split(":", 1)[0].strip()
        for entry in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    }
    if env["AIRFLOW_ADMIN_USER"] not in declared:
        errors.append(
            f"AIRFLOW_ADMIN_USER={env['AIRFLOW_ADMIN_USER']!r} is not among the users of "
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"
        )
    return errors


def write_passwords(path: Path, passwords: Mapping[str, str]) -> None:
    """Replace the file in one step: the api-server never reads a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".passwords-")
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(passwords), handle)
    os.replace(tmp, path)


def main(env: Mapping[str, str]) -> int:
    errors = configuration_errors(env)
    if errors:
        for error in errors:
            print(f"airflow-init: {error}", file=sys.stderr)
        return 2
    subprocess.run(["airflow", "db", "migrate"], check=True)
    subprocess.run([sys.executable, "-m", "tasador", "db", "upgrade"], check=True)
    passwords_file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    write_passwords(passwords_file, {env["AIRFLOW_ADMIN_USER"]: env["AIRFLOW_ADMIN_PASSWORD"]})
    print(f"airflow-init: databases migrated, password of {env['AIRFLOW_ADMIN_USER']!r} set")
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
