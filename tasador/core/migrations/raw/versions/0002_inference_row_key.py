"""RAW: ``inference_requests`` gets ``request_id``/``row_index`` and their unique key.

This replaces the ``ALTER TABLE ... IF NOT EXISTS`` the inference log used to run at start, so
it tolerates every state that left: columns present or not, the key as a unique index (which
becomes the constraint, same name) or as a constraint already.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the request columns if missing and the unique key, reusing an index of that name."""
    op.execute(
        "ALTER TABLE inference_requests ADD COLUMN IF NOT EXISTS request_id uuid, "
        "ADD COLUMN IF NOT EXISTS row_index integer"
    )
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if any(
        c["name"] == "inference_row_key"
        for c in inspector.get_unique_constraints("inference_requests")
    ):
        return
    has_index = any(
        i["name"] == "inference_row_key" for i in inspector.get_indexes("inference_requests")
    )
    if has_index:
        op.execute(
            "ALTER TABLE inference_requests ADD CONSTRAINT inference_row_key "
            "UNIQUE USING INDEX inference_row_key"
        )
    else:
        op.create_unique_constraint(
            "inference_row_key", "inference_requests", ["request_id", "row_index"]
        )


def downgrade() -> None:
    """Drop the unique key and the ``request_id``/``row_index`` columns."""
    op.drop_constraint("inference_row_key", "inference_requests", type_="unique")
    op.drop_column("inference_requests", "row_index")
    op.drop_column("inference_requests", "request_id")
