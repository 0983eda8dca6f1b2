"""`tasador db`: the schema of the RAW and CLEAN databases."""

from __future__ import annotations

import typer

from tasador.cli.context import friendly_errors, resolved_settings, upgrade_databases

db_app = typer.Typer(no_args_is_help=True, help=__doc__)


@db_app.command("upgrade")
@friendly_errors
def upgrade_command() -> None:
    """Upgrade RAW and CLEAN to the newest schema (adopting databases made before migrations)."""
    settings = resolved_settings(("raw", "clean"), mlflow=False, migrate=False)
    revisions = upgrade_databases(settings.databases)
    for database, revision in revisions.items():
        typer.echo(f"{database}: at revision {revision}")
