"""RAW baseline: the schema ``metadata.create_all`` made before migrations, minus the request key.

``inference_requests`` is the table as first created (no ``request_id``/``row_index``); 0002 adds
them. Each table is created only when missing, so a database made by the old code is completed,
never failed on.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tasador.core.migrations import table_exists

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copy of tasador.core.columns.RAW_COLUMNS as of this revision.
RAW_COLUMNS = (
    "brokered_by",
    "status",
    "price",
    "bed",
    "bath",
    "acre_lot",
    "street",
    "city",
    "state",
    "zip_code",
    "house_size",
    "prev_sold_date",
)


def upgrade() -> None:
    """Create whichever of the RAW tables are missing."""
    if not table_exists("batch_rows"):
        op.create_table(
            "batch_rows",
            sa.Column("batch_id", sa.BigInteger, primary_key=True),
            sa.Column("row_index", sa.Integer, primary_key=True),
            *(sa.Column(c, sa.Text) for c in RAW_COLUMNS),
        )
    if not table_exists("batches"):
        op.create_table(
            "batches",
            sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
            sa.Column("group_number", sa.Integer, nullable=False),
            sa.Column("day", sa.Text, nullable=False, server_default=""),
            sa.Column("batch_number", sa.Integer, nullable=False),
            sa.Column(
                "received_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.func.now(),
            ),
            sa.Column("row_count", sa.Integer, nullable=False),
            sa.Column("payload_sha256", sa.CHAR(64), nullable=False),
            sa.Column("source", sa.Text, nullable=False),
            sa.UniqueConstraint(
                "group_number", "day", "batch_number", "payload_sha256", name="batch_key"
            ),
        )
    if not table_exists("inference_requests"):
        op.create_table(
            "inference_requests",
            sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
            sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("endpoint", sa.Text, nullable=False),
            sa.Column("model_name", sa.Text),
            sa.Column("model_version", sa.Text),
            sa.Column("inputs", sa.JSON, nullable=False),
            sa.Column("prediction", sa.Float),
            sa.Column("latency_ms", sa.Float),
            sa.Column("status_code", sa.Integer, nullable=False),
        )


def downgrade() -> None:
    """Drop every RAW table."""
    op.drop_table("inference_requests")
    op.drop_table("batches")
    op.drop_table("batch_rows")
