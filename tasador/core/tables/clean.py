"""CLEAN's tables: typed, de-duplicated listings with batch lineage, the cleaning record of each
batch, retrain decisions, and the audit of promotions and alias moves.

Written by :mod:`tasador.core.clean_store` (listings, cleaned batches),
:mod:`tasador.core.decisions_store` (decisions) and ``experiments.promotions`` (promotions and
alias moves, the alias history MLflow does not keep); made by the migrations of ``clean/``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from tasador.core.columns import RAW_COLUMNS

metadata = sa.MetaData()

cleaned_batches = sa.Table(
    "cleaned_batches",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),  # the RAW batch id
    sa.Column("group_number", sa.Integer, nullable=False),
    sa.Column("day", sa.Text, nullable=False),
    sa.Column("batch_number", sa.Integer, nullable=False),
    sa.Column("payload_sha256", sa.CHAR(64), nullable=False),
    sa.Column("rows_in", sa.Integer, nullable=False),
    sa.Column("rows_out", sa.Integer, nullable=False),
    sa.Column("report", postgresql.JSONB, nullable=False),
    sa.Column(
        "cleaned_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

# The typed columns of a listing; every other column of RAW_COLUMNS stays text.
LISTING_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "price": sa.Float(53),
    "bed": sa.Float(53),
    "bath": sa.Float(53),
    "acre_lot": sa.Float(53),
    "house_size": sa.Float(53),
    "prev_sold_date": sa.Date(),
}

listings = sa.Table(
    "listings",
    metadata,
    # No foreign key to cleaned_batches (CLEAN migration 0004): checked by a trigger per row, it
    # cost a third of the INSERT. A batch's row and its listings are written in one transaction.
    sa.Column("batch_id", sa.BigInteger, primary_key=True),
    sa.Column("row_index", sa.Integer, primary_key=True),
    sa.Column("row_hash", sa.BigInteger, nullable=False, unique=True),
    sa.Column("is_holdout", sa.Boolean, nullable=False),
    *(sa.Column(c, LISTING_TYPES.get(c, sa.Text()), nullable=(c != "price")) for c in RAW_COLUMNS),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("batch_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("verdict", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("evidence", postgresql.JSONB, nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("verdict IN ('retrain', 'skip')", name="decisions_verdict"),
)

# One champion/challenger verdict per challenger version, promoted or not.
model_promotions = sa.Table(
    "model_promotions",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "decided_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("challenger_version", sa.Integer, nullable=False),
    sa.Column("previous_version", sa.Integer),  # production before the decision (None: none)
    sa.Column("promoted", sa.Boolean, nullable=False),
    sa.Column("challenger_rmsle", sa.Float(53), nullable=False),
    sa.Column("previous_rmsle", sa.Float(53)),
    sa.Column("margin", sa.Float(53), nullable=False),
    sa.Column("holdout_rows", sa.Integer, nullable=False),
    sa.Column("study_name", sa.Text, nullable=False),
    sa.Column("retrain_decision_id", sa.BigInteger),
    sa.Column("summary", sa.Text, nullable=False),
    # The evidence (CLEAN 0005): the rule that decided, the bootstrap interval of the RMSLE
    # improvement and the segment at fault (experiments.gate); NULL on older verdicts.
    sa.Column("guard", sa.Text),
    sa.Column("improvement_low", sa.Float(53)),
    sa.Column("improvement_high", sa.Float(53)),
    sa.Column("segment", sa.Text),
    sa.UniqueConstraint("model_name", "challenger_version", name="one_decision_per_version"),
)

# Every move of the alias (CLEAN 0003): the alias history MLflow does not keep.
alias_moves = sa.Table(
    "alias_moves",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("alias", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("previous_version", sa.Integer),
    sa.Column("cause", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("promotion_id", sa.BigInteger),  # the model_promotions row of a promotion
    sa.CheckConstraint("cause IN ('promotion', 'rollback')", name="alias_moves_cause"),
    sa.Index("alias_moves_by_model", "model_name", "moved_at"),
)
