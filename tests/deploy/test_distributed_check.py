"""docker/distributed_check.py's own parts that need no stack: how it reaches the databases in
the containers, and what it says when the stack does not answer."""

from __future__ import annotations

import shlex
import sys

import pytest

from tasador.core.services import free_port
from tests.helpers.docker_scripts import DISTRIBUTED_CHECK


def test_a_sql_command_gets_the_query_as_its_last_argument_and_prints_a_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As `docker compose exec -T postgres-clean psql ... -Atc` would: here, the query's length.
    command = [sys.executable, "-c", "import sys; print(len(sys.argv[-1]))"]
    monkeypatch.setenv("CHECK_CLEAN_SQL", shlex.join(command))
    run = DISTRIBUTED_CHECK.sql_command("CHECK_CLEAN_SQL")
    assert run("SELECT count(*) FROM listings") == len("SELECT count(*) FROM listings")


def test_an_api_server_that_never_answers_fails_with_what_was_awaited() -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(AssertionError, match="waiting for the Airflow API server to issue a token"):
        DISTRIBUTED_CHECK.Airflow(unreachable, ("admin", "secret"), timeout_s=1.0)
