"""CLEAN: ``listings`` loses its foreign key to ``cleaned_batches``.

PostgreSQL checks a foreign key with a trigger per inserted row: for a 361k-row batch that was a
third of the server's time in the INSERT into ``listings``. The key guarded nothing the code
does not already: ``clean_batch`` writes a batch's ``cleaned_batches`` row and its listings in
one transaction, and nothing deletes cleaned batches (RAW's ``batch_rows`` has no such key for
the same reason).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop the foreign key of ``listings.batch_id``."""
    op.execute("ALTER TABLE listings DROP CONSTRAINT IF EXISTS listings_batch_id_fkey")


def downgrade() -> None:
    """Put the foreign key back."""
    op.create_foreign_key(
        "listings_batch_id_fkey", "listings", "cleaned_batches", ["batch_id"], ["id"]
    )
