"""RAW: ``live_drift_checks``, each comparison of the served requests with the training rows.

Written by ``tasador monitor`` and its DAG (tasador.loop.monitor); the window of requests it
covers, ``(after_request_id, through_request_id]``, is unique, so a repeated run stores nothing.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the live drift table."""
    op.create_table(
        "live_drift_checks",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "checked_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("after_request_id", sa.BigInteger, nullable=False),
        sa.Column("through_request_id", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("compared", sa.Boolean, nullable=False),
        sa.Column("alarm", sa.Boolean, nullable=False),
        sa.Column("drift_share", sa.Float(53)),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.UniqueConstraint("after_request_id", "through_request_id", name="live_drift_window"),
    )


def downgrade() -> None:
    """Drop the live drift table."""
    op.drop_table("live_drift_checks")
