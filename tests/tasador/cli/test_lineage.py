"""`tasador lineage` prints the chain from a logged request down to the batches' hashes."""

from __future__ import annotations

from typer.testing import CliRunner

from tasador.cli import app
from tasador.core import db, raw_store
from tests.helpers.provenance import serve_one_request


def test_lineage_of_a_request_a_version_and_a_batch(search_settings, raw_sample, cli_env):
    served = serve_one_request(search_settings.updated(search_trials=2), raw_sample)
    cli_env(served.settings)
    runner = CliRunner()

    out = runner.invoke(app, ["lineage", "--request", served.request_id])
    assert out.exit_code == 0, out.output
    assert "version 1 @challenger, @production" in out.output and "state drifted" in out.output
    for batch_id in served.trained:
        sha = raw_store.get_batch(
            db.engine("raw", served.settings.databases), batch_id
        ).payload_sha256
        assert f"batch {batch_id} " in out.output and sha in out.output

    out = runner.invoke(app, ["lineage", "--batch", str(served.later)])
    assert out.exit_code == 0 and "no model version learned from this batch" in out.output

    out = runner.invoke(app, ["lineage", "--version", "1", "--json"])
    assert out.exit_code == 0 and '"requests_answered": 1' in out.output

    out = runner.invoke(app, ["lineage", "--version", "1", "--batch", "1"])
    assert out.exit_code == 2 and "exactly one of" in out.output
