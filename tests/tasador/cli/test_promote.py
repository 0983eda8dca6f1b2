"""`tasador promote --challenger` promotes the challenger that waited for shadow rows."""

from __future__ import annotations

from typer.testing import CliRunner

from tasador.cli import app
from tests.helpers.shadow import shadow


def test_promote_challenger_waits_then_promotes(waiting, cli_env):
    c = waiting
    cli_env(c.settings)
    runner = CliRunner()
    assert runner.invoke(app, ["promote"]).exit_code != 0  # says what to name
    out = runner.invoke(app, ["promote", "--challenger"])
    assert out.exit_code != 0 and "waiting for 3 shadow rows, has 0" in out.output
    shadow(c.settings, 3)
    out = runner.invoke(app, ["promote", "--challenger"])
    assert out.exit_code == 0, out.output
    assert "version 2" in out.output and "promoted after shadow traffic" in out.output
    assert c.production() == 2
