"""`tasador scoring-artifacts`: give versions registered before scoring artifacts existed one."""

from __future__ import annotations

import typer

from tasador.cli.context import resolved_settings


def scoring_artifacts_command() -> None:
    """Store a scoring artifact for every version of the model that has none, made from its
    pickled model (serving loads nothing else, and refuses a version without one)."""
    from experiments import registry  # imported when used: MLflow, scikit-learn

    settings = resolved_settings(())
    client = registry.connect(settings)
    name = settings.mlflow.model_name
    done = 0
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.tags.get(registry.SCORING_TAG) == "stored":
            continue
        status = registry.store_scoring(client, settings.mlflow, version)
        typer.echo(f"{name} version {version.version}: {status}")
        done += 1
    typer.echo(f"{done} version(s) without a scoring artifact before this command")
