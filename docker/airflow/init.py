#!/usr/bin/env python3
"""One-shot Airflow initialisation for the compose stack (service ``airflow-init``).

1. ``airflow db migrate`` creates or upgrades the metadata database (safe to repeat).
2. ``tasador db upgrade`` does the same for the RAW and CLEAN databases: the DAGs' tasks only
   read and write them, so their schema must be current before any task runs.
3. The least-privilege roles of RAW and CLEAN: ``tasador_serving`` may only append to RAW's
   inference log, ``tasador_ui`` only reads both (``grants-raw.sql``, ``grants-clean.sql``, run
   as the owner the migrations ran as, with the passwords ``SERVING_DB_PASSWORD`` and
   ``UI_DB_PASSWORD`` from ``.env``). A model is a pickle serving loads: code in it gets these
   rights, not the owner's.
4. The pool of the search workers (``tasador_search``, ``AIRFLOW_SEARCH_POOL_SLOTS`` slots):
   a study never takes the slots an ingestion run needs.
5. The admin's password goes from ``AIRFLOW_ADMIN_PASSWORD`` (``.env``) to the passwords file of
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

HERE = Path(__file__).resolve().parent
# tasador.loop.dag_defaults.SEARCH_POOL (a test keeps them equal).
SEARCH_POOL = "tasador_search"
# Role names (docker-compose.yml builds serving's and the UI's URLs with them).
DB_ROLES = {"serving": "tasador_serving", "ui": "tasador_ui"}
DB_ROLE_PASSWORDS = {"serving": "SERVING_DB_PASSWORD", "ui": "UI_DB_PASSWORD"}
# The roles each database grants to, and the URL (of the tables' owner) it is reached with.
ROLES_OF = {"raw": ("serving", "ui"), "clean": ("ui",)}
URL_OF = {"raw": "TASADOR_RAW_DB_URL", "clean": "TASADOR_CLEAN_DB_URL"}

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
    needed = [*DB_ROLE_PASSWORDS.values(), *URL_OF.values()]
    errors += [f"{name} is not set" for name in needed if not env.get(name)]
    return errors


def grants_sql(database: str) -> str:
    """The grants of one database (``raw`` or ``clean``), with ``{role}`` placeholders."""
    return (HERE / f"grants-{database}.sql").read_text()


def grant_roles(
    url: str,
    database: str,
    passwords: Mapping[str, str],
    roles: Mapping[str, str] = DB_ROLES,
) -> None:
    """Create or update the login roles of ``database`` and apply its grants, as ``url``'s role.

    ``passwords`` and ``roles`` are keyed like ``DB_ROLES`` (``serving``, ``ui``). The password
    of an existing role is set again, so changing it in ``.env`` takes effect on the next start.
    """
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    wanted = ROLES_OF[database]
    with psycopg.connect(plain, autocommit=True) as conn:
        for key in wanted:
            role = sql.Identifier(roles[key])
            found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (roles[key],))
            if found.fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {}").format(role))
            conn.execute(
                sql.SQL(
                    "ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}"
                ).format(role, sql.Literal(passwords[key]))
            )
        names = {key: sql.Identifier(roles[key]) for key in wanted}
        database_name = sql.Identifier(conn.info.dbname)
        conn.execute(sql.SQL(grants_sql(database)).format(database=database_name, **names))


def write_passwords(path: Path, passwords: Mapping[str, str]) -> None:
    """Replace the file in one step: the api-server never reads a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".passwords-")
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(passwords), handle)
    os.replace(tmp, path)


def main(env: Mapping[str, str]) -> int:
    if errors := configuration_errors(env):
        print("\n".join(f"airflow-init: {error}" for error in errors), file=sys.stderr)
        return 2
    subprocess.run(["airflow", "db", "migrate"], check=True)
    subprocess.run([sys.executable, "-m", "tasador", "db", "upgrade"], check=True)
    slots = env.get("AIRFLOW_SEARCH_POOL_SLOTS") or "2"
    pool = ["airflow", "pools", "set", SEARCH_POOL, slots, "Optuna search workers"]
    subprocess.run(pool, check=True, stdout=subprocess.DEVNULL)
    passwords = {key: env[name] for key, name in DB_ROLE_PASSWORDS.items()}
    for database, variable in URL_OF.items():
        grant_roles(env[variable], database, passwords)
    passwords_file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    write_passwords(passwords_file, {env["AIRFLOW_ADMIN_USER"]: env["AIRFLOW_ADMIN_PASSWORD"]})
    print(
        f"airflow-init: databases migrated, roles {sorted(DB_ROLES.values())} granted, "
        f"pool {SEARCH_POOL} has {slots} slots, "
        f"password of {env['AIRFLOW_ADMIN_USER']!r} set"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
