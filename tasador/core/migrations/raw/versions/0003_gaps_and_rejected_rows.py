"""RAW: nothing lost in collection: ``batch_gaps``, ``rejected_rows``, ``batches.rejected_count``.

``batch_gaps`` records every batch number the data API skipped for a group and day (and when a
replay filled it); ``rejected_rows`` keeps the rows of a batch that cannot be stored as columns
(wrong shape, a NUL character PostgreSQL refuses), as their JSON text and the reason.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the gap and rejected-row tables and the batches' rejected-row count."""
    op.add_column(
        "batches",
        sa.Column("rejected_count", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "rejected_rows",
        sa.Column("batch_id", sa.BigInteger, primary_key=True),
        sa.Column("row_index", sa.Integer, primary_key=True),  # its position in the payload
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),  # the row as JSON (NUL as \u0000)
    )
    op.create_table(
        "batch_gaps",
        sa.Column("group_number", sa.Integer, primary_key=True),
        sa.Column("day", sa.Text, primary_key=True),
        sa.Column("batch_number", sa.Integer, primary_key=True),
        sa.Column(
            "detected_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("detected_by_batch_id", sa.BigInteger, nullable=False),
        sa.Column("filled_at", sa.DateTime(timezone=True)),
        sa.Column("filled_by_batch_id", sa.BigInteger),
    )


def downgrade() -> None:
    """Drop the gap and rejected-row tables and the rejected-row count."""
    op.drop_table("batch_gaps")
    op.drop_table("rejected_rows")
    op.drop_column("batches", "rejected_count")
