"""CLEAN baseline: the schema ``metadata.create_all`` made before migrations.

Each table is created only when missing: every store used to create just its own tables, so a
database made by the old code can hold any subset of them.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from tasador.core.migrations import table_exists

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create whichever of the CLEAN tables are missing."""
    if not table_exists("batches"):
        op.create_table(
            "batches",
            sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("group_number", sa.Integer, nullable=False),
            sa.Column("day", sa.Text, nullable=False),
            sa.Column("batch_number", sa.Integer, nullable=False),
            sa.Column("payload_sha256", sa.CHAR(64), nullable=False),
            sa.Column("rows_in", sa.Integer, nullable=False),
            sa.Column("rows_out", sa.Integer, nullable=False),
            sa.Column("report", postgresql.JSONB, nullable=False),
            sa.Column(
                "cleaned_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.func.now(),
            ),
        )
    if not table_exists("listings"):
        op.create_table(
            "listings",
            sa.Column("batch_id", sa.BigInteger, sa.ForeignKey("batches.id"), primary_key=True),
            sa.Column("row_index", sa.Integer, primary_key=True),
            sa.Column("row_hash", sa.BigInteger, nullable=False, unique=True),
            sa.Column("is_holdout", sa.Boolean, nullable=False),
            sa.Column("brokered_by", sa.Text),
            sa.Column("status", sa.Text),
            sa.Column("price", sa.Float(53), nullable=False),
            sa.Column("bed", sa.Float(53)),
            sa.Column("bath", sa.Float(53)),
            sa.Column("acre_lot", sa.Float(53)),
            sa.Column("street", sa.Text),
            sa.Column("city", sa.Text),
            sa.Column("state", sa.Text),
            sa.Column("zip_code", sa.Text),
            sa.Column("house_size", sa.Float(53)),
            sa.Column("prev_sold_date", sa.Date),
        )
    if not table_exists("decisions"):
        op.create_table(
            "decisions",
            sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
            sa.Column("batch_id", sa.BigInteger, nullable=False, unique=True),
            sa.Column("verdict", sa.Text, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("evidence", postgresql.JSONB, nullable=False),
            sa.Column(
                "created_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.func.now(),
            ),
            sa.CheckConstraint("verdict IN ('retrain', 'skip')", name="decisions_verdict"),
        )
    if not table_exists("model_promotions"):
        op.create_table(
            "model_promotions",
            sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
            sa.Column(
                "decided_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.func.now(),
            ),
            sa.Column("model_name", sa.Text, nullable=False),
            sa.Column("challenger_version", sa.Integer, nullable=False),
            sa.Column("previous_version", sa.Integer),
            sa.Column("promoted", sa.Boolean, nullable=False),
            sa.Column("challenger_rmsle", sa.Float(53), nullable=False),
            sa.Column("previous_rmsle", sa.Float(53)),
            sa.Column("margin", sa.Float(53), nullable=False),
            sa.Column("holdout_rows", sa.Integer, nullable=False),
            sa.Column("study_name", sa.Text, nullable=False),
            sa.Column("retrain_decision_id", sa.BigInteger),
            sa.Column("summary", sa.Text, nullable=False),
            sa.UniqueConstraint(
                "model_name", "challenger_version", name="one_decision_per_version"
            ),
        )


def downgrade() -> None:
    """Drop every CLEAN table."""
    op.drop_table("model_promotions")
    op.drop_table("decisions")
    op.drop_table("listings")
    op.drop_table("batches")
