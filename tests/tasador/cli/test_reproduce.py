"""`tasador reproduce` prints its verdict with the figures, and exits by the error taxonomy."""

from __future__ import annotations

from mlflow import MlflowClient
from typer.testing import CliRunner

from tasador.cli import app
from tasador.core import lineage
from tests.helpers.search import searched_version


def test_reproduce_prints_the_verdict_and_exits_by_what_went_wrong(
    search_settings, raw_sample, cli_env
):
    settings = search_settings.updated(search_trials=2)
    searched_version(settings, raw_sample.iloc[:1400], [800, 600])
    cli_env(settings)
    runner = CliRunner()

    out = runner.invoke(app, ["reproduce", "--version", "1", "--tolerance", "0.02"])
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("reproduced: ") and "tolerance 2.0%" in out.output

    out = runner.invoke(app, ["reproduce", "--version", "1", "--json"])
    assert out.exit_code == 0 and '"differences": []' in out.output

    MlflowClient(settings.mlflow.mlflow_tracking_uri).set_model_version_tag(
        settings.mlflow.model_name, "1", lineage.DATA_HASH, "f" * 64
    )
    out = runner.invoke(app, ["reproduce", "--version", "1"])
    assert out.exit_code == 6  # Conflict: the record and RAW disagree
    assert out.stdout.startswith("not reproduced: ")
    assert "error: version 1 was not reproduced: the training rows rebuilt" in out.output

    out = runner.invoke(app, ["reproduce", "--version", "9"])
    assert out.exit_code == 3 and "has no version 9" in out.output


def test_reproduce_refuses_a_tolerance_outside_zero_to_one():
    # Refused while the options are read, before any server is started or asked.
    out = CliRunner().invoke(app, ["reproduce", "--version", "1", "--tolerance", "1.5"])
    assert out.exit_code == 2 and "--tolerance" in out.output
