"""Alembic environment: everything is in tasador.core.migrations.run_environment."""

from tasador.core.migrations import run_environment

run_environment()
