"""RAW: ``shadow_predictions``, the challenger's price of a served row next to production's.

Serving scores a sampled share of ``/predict`` rows with the ``@challenger`` version off the
request path (serving.shadow); each row is keyed like its ``inference_requests`` row
(``request_id``, ``row_index``), so writing it twice stores it once.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the shadow table and its index by versions (the promotion gate counts by them)."""
    op.create_table(
        "shadow_predictions",
        sa.Column("request_id", sa.Uuid, primary_key=True),
        sa.Column("row_index", sa.Integer, primary_key=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("production_version", sa.Text, nullable=False),
        sa.Column("production_prediction", sa.Float(53), nullable=False),
        sa.Column("challenger_version", sa.Text, nullable=False),
        sa.Column("challenger_prediction", sa.Float(53)),  # NULL: not finite
        sa.Column("state", sa.Text),
    )
    op.create_index(
        "shadow_by_versions",
        "shadow_predictions",
        ["model_name", "challenger_version", "production_version"],
    )


def downgrade() -> None:
    """Drop the shadow table."""
    op.drop_table("shadow_predictions")
