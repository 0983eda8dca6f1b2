#!/usr/bin/env python3
"""Start the MLflow server with its basic-auth app configured from the environment.

MLflow's basic-auth app reads an ini file (``MLFLOW_AUTH_CONFIG_PATH``) for the permission every
user has by default and for the database of its users. That database URL holds a password, so
the file is written here, readable by this user only, from:

- ``MLFLOW_AUTH_DATABASE_URI``: the users' database (the stack uses MLflow's own PostgreSQL
  database; the auth tables and their ``alembic_version_auth`` do not collide with MLflow's);
- ``MLFLOW_AUTH_DEFAULT_PERMISSION``: ``READ`` unless set. Every authenticated user may read;
  writing to an experiment or a registered model takes a grant (see docker/mlflow/init.py).

The admin login comes straight from ``MLFLOW_AUTH_ADMIN_USERNAME`` / ``MLFLOW_AUTH_ADMIN_PASSWORD``
(MLflow reads them itself). Nothing secret is put on a command line. Arguments are passed on to
``mlflow`` (e.g. ``server --app-name basic-auth --host 0.0.0.0 --port 5000``).
"""

from __future__ import annotations

import configparser
import os
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path

PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")
REQUIRED = ("MLFLOW_AUTH_DATABASE_URI", "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD")


def configuration_errors(env: Mapping[str, str]) -> list[str]:
    errors = [f"{name} is not set" for name in REQUIRED if not env.get(name)]
    permission = env.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "READ")
    if permission not in PERMISSIONS:
        errors.append(f"MLFLOW_AUTH_DEFAULT_PERMISSION={permission!r} is not one of {PERMISSIONS}")
    return errors


def write_auth_config(env: Mapping[str, str], folder: Path) -> Path:
    """The ini file of the basic-auth app, mode 0600, in ``folder``."""
    values = {
        "default_permission": env.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "READ"),
        "database_uri": env["MLFLOW_AUTH_DATABASE_URI"],
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    # MLflow reads the file with interpolation: a literal % (URL-encoded URIs) is written %%.
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {key: value.replace("%", "%%") for key, value in values.items()}
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".basic_auth-")  # mode 0600
    with os.fdopen(fd, "w") as handle:
        config.write(handle)
    path = folder / "basic_auth.ini"
    os.replace(tmp, path)  # one step: a restart never leaves a half-written file
    return path


def main(args: list[str], env: MutableMapping[str, str]) -> int:
    errors = configuration_errors(env)
    if errors:
        for error in errors:
            print(f"mlflow-start: {error}", file=sys.stderr)
        return 2
    folder = Path(env.get("HOME") or tempfile.gettempdir()) / ".mlflow-auth"
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(write_auth_config(env, folder))
    os.execvpe("mlflow", ["mlflow", *args], dict(env))
    return 1  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], dict(os.environ)))
