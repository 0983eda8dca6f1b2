"""Alembic environment of RAW: everything is in tasador.core.migrations.run_environment."""

from tasador.core.migrations import run_environment
from tasador.core.tables import raw

run_environment(raw.metadata)
