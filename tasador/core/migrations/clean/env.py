"""Alembic environment of CLEAN: everything is in tasador.core.migrations.run_environment."""

from tasador.core.migrations import run_environment
from tasador.core.tables import clean

run_environment(clean.metadata)
