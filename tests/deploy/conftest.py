"""Fixtures of the tests that run the stack's services as local processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasador.core.services import free_port
from tests.helpers.dockerfile import REPO
from tests.helpers.local_run import Localizer, started, wait_healthy
from tests.helpers.local_stack import ENV, REDIS_SERVER, SERVICES


@pytest.fixture
def localizer(make_database: Callable[[str], str], s3_server: str, tmp_path: Path) -> Localizer:
    """Container addresses and folders as local ones: each compose PostgreSQL database a fresh
    database of the test server, SeaweedFS the moto S3 (more addresses added by the tests)."""
    databases: dict[tuple[str, str], str] = {}

    def postgres(service: str, database: str) -> str:
        if (service, database) not in databases:
            databases[service, database] = make_database(service.replace("-", "_"))
        return databases[service, database]

    return Localizer(
        services=set(SERVICES),
        postgres=postgres,
        http={"seaweedfs:8333": s3_server.split("://", 1)[1]},  # more added by tests
        paths={
            "/opt/airflow": tmp_path / "airflow",
            "/var/lib/tasador": tmp_path / "state",
            "/opt/tasador": REPO,
        },
        unreachable=f"127.0.0.1:{free_port()}",
    )


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[str]:
    """A Redis-protocol server for the Valkey service (Debian's redis-server, on a free port),
    with the password of .env.example; stopped when the test ends."""
    if not REDIS_SERVER.exists():
        pytest.fail(
            f"{REDIS_SERVER} is missing: `make test` installs Debian's redis-server package "
            "(or run `apt-get install -y redis-server`)."
        )
    port, password = free_port(), ENV["VALKEY_PASSWORD"]
    args = [
        str(REDIS_SERVER),
        "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--requirepass", password,
    ]  # fmt: skip
    probe = [
        sys.executable,
        "-c",
        f"import redis; redis.Redis(port={port}, password={password!r}).ping()",
    ]
    log = tmp_path / "redis.log"
    with started(args, {}, cwd=tmp_path, log=log) as process:
        wait_healthy(process, probe, {"PATH": os.environ["PATH"]}, log, timeout_s=30.0)
        yield f"127.0.0.1:{port}"
