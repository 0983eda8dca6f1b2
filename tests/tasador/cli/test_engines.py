"""A `tasador` command owns the engines it makes: they are disposed of when it ends."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from typer.testing import CliRunner

from tasador.cli import app
from tasador.core import db


def test_a_command_disposes_of_the_engines_it_made(settings, cli_env, monkeypatch):
    cli_env(settings)
    made: list[sa.Engine] = []
    make = db.engine_for

    def recorded(url: str) -> sa.Engine:
        engine = make(url)
        # The command's own (CliRunner runs it in this thread), not a background thread's that
        # an earlier test in this process may have left finishing.
        if threading.current_thread() is threading.main_thread():
            made.append(engine)
        return engine

    monkeypatch.setattr(db, "engine_for", recorded)
    out = CliRunner().invoke(app, ["status", "--json", "--no-models"])
    assert out.exit_code == 0, out.output
    monkeypatch.undo()
    urls = [
        u.get_secret_value()
        for u in (settings.databases.raw_db_url, settings.databases.clean_db_url)
    ]
    assert {e.url.database for e in made} == {sa.make_url(u).database for u in urls}
    for engine in made:
        assert engine.pool.checkedin() == 0  # its pooled connections are closed
    assert not {id(db.engine_for(u)) for u in urls} & {id(e) for e in made}  # and forgotten
