"""`tasador rollback` moves the alias back; `tasador status` lists the alias history."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tasador.cli import app


def test_rollback_then_status_shows_the_history(promoted_twice, cli_env):
    c = promoted_twice
    cli_env(c.settings)
    runner = CliRunner()
    out = runner.invoke(app, ["rollback", "--reason", "v2 misprices condos"])
    assert out.exit_code == 0, out.output
    assert "version 2 -> 1" in out.output
    assert c.production() == 1

    out = runner.invoke(app, ["status", "--json"])
    assert out.exit_code == 0, out.output
    history = json.loads(out.output)["alias_history"]
    assert [(m["version"], m["cause"]) for m in history] == [
        (1, "promotion"),
        (2, "promotion"),
        (1, "rollback"),
    ]
    out = runner.invoke(app, ["status", "--table"])
    assert "history of @production" in out.output and "v2 misprices condos" in out.output

    out = runner.invoke(app, ["rollback", "--to", "1"])  # already production: exit 6, a sentence
    assert out.exit_code == 6 and "already" in out.output
