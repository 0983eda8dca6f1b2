"""CLEAN: ``alias_moves``, the history of the production alias (promotions and rollbacks).

MLflow keeps no history of aliases; ``model_promotions`` holds one verdict per challenger, so it
cannot say that production went back to an older version. Every move of the alias is a row
here. Existing promotions are copied in as the moves they made.

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
    """Create ``alias_moves`` and fill it with the promotions made so far."""
    op.create_table(
        "alias_moves",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "moved_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("alias", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("previous_version", sa.Integer),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("promotion_id", sa.BigInteger),  # the model_promotions row of a promotion
        sa.CheckConstraint("cause IN ('promotion', 'rollback')", name="alias_moves_cause"),
    )
    op.create_index("alias_moves_by_model", "alias_moves", ["model_name", "moved_at"])
    op.execute(
        "INSERT INTO alias_moves (moved_at, model_name, alias, version, previous_version, cause,"
        " reason, promotion_id) SELECT decided_at, model_name, 'production', challenger_version,"
        " previous_version, 'promotion', summary, id FROM model_promotions WHERE promoted"
        " ORDER BY decided_at, id"
    )


def downgrade() -> None:
    """Drop ``alias_moves``."""
    op.drop_index("alias_moves_by_model", table_name="alias_moves")
    op.drop_table("alias_moves")
