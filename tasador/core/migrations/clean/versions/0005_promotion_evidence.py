"""CLEAN: ``model_promotions`` keeps the evidence of each verdict.

The champion/challenger step decides on a paired bootstrap interval of the RMSLE improvement and
on guards per state and kind (experiments.gate). The row records the rule that decided, the
interval and the segment at fault, so the audit (and the shadow gate's re-check) need not parse
the summary. Verdicts given before stay NULL there.

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

COLUMNS = (
    ("guard", sa.Text),
    ("improvement_low", sa.Float(53)),
    ("improvement_high", sa.Float(53)),
    ("segment", sa.Text),
)


def upgrade() -> None:
    """Add the evidence columns (nullable: older verdicts have none)."""
    for name, kind in COLUMNS:
        op.add_column("model_promotions", sa.Column(name, kind))


def downgrade() -> None:
    """Drop them."""
    for name, _ in reversed(COLUMNS):
        op.drop_column("model_promotions", name)
