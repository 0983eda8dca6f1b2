"""CLEAN: ``batches`` becomes ``cleaned_batches`` (RAW has a ``batches`` table of its own).

The primary key's index is renamed along, so the schema matches a fresh ``create_all`` of the
new name; the foreign key of ``listings`` follows the table by itself.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Rename ``batches`` (and its primary key index) to ``cleaned_batches``."""
    op.rename_table("batches", "cleaned_batches")
    op.execute("ALTER INDEX batches_pkey RENAME TO cleaned_batches_pkey")


def downgrade() -> None:
    """Rename ``cleaned_batches`` (and its primary key index) back to ``batches``."""
    op.execute("ALTER INDEX cleaned_batches_pkey RENAME TO batches_pkey")
    op.rename_table("cleaned_batches", "batches")
