"""RAW's tables: every batch exactly as received, every inference request, shadow prices.

Row values are kept as the text they arrived as (typing happens in CLEAN). Written by
:mod:`tasador.core.raw_store` (batches), ``serving.inference_log`` (requests) and
:mod:`tasador.core.shadow_store` (shadow prices); made by the migrations of ``raw/``.
"""

from __future__ import annotations

import sqlalchemy as sa

from tasador.core.columns import RAW_COLUMNS

metadata = sa.MetaData()

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("group_number", sa.Integer, nullable=False),
    sa.Column("day", sa.Text, nullable=False, server_default=""),  # "" when the API has no day
    sa.Column("batch_number", sa.Integer, nullable=False),
    sa.Column(
        "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("payload_sha256", sa.CHAR(64), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("rejected_count", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("group_number", "day", "batch_number", "payload_sha256", name="batch_key"),
)

rejected_rows = sa.Table(
    "rejected_rows",
    metadata,
    sa.Column("batch_id", sa.BigInteger, primary_key=True),
    sa.Column("row_index", sa.Integer, primary_key=True),  # its position in the payload
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("content", sa.Text, nullable=False),  # the row as JSON text (NUL as \u0000)
)

batch_gaps = sa.Table(
    "batch_gaps",
    metadata,
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

batch_rows = sa.Table(
    "batch_rows",
    metadata,
    # No foreign key to batches: PostgreSQL checks one with a trigger per row, which made COPY
    # of a 200k-row batch 1.6x slower. Rows and their batch are written in one transaction by
    # store_batch alone, and nothing deletes batches, so no row can lose its batch.
    sa.Column("batch_id", sa.BigInteger, primary_key=True),
    sa.Column("row_index", sa.Integer, primary_key=True),
    *(sa.Column(c, sa.Text) for c in RAW_COLUMNS),
)

inference_requests = sa.Table(
    "inference_requests",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("model_name", sa.Text),
    sa.Column("model_version", sa.Text),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("prediction", sa.Float),
    sa.Column("latency_ms", sa.Float),
    sa.Column("status_code", sa.Integer, nullable=False),
    # One row per listing of a request; the key makes re-sending a logged batch harmless.
    sa.Column("request_id", sa.Uuid),
    sa.Column("row_index", sa.Integer),
    sa.UniqueConstraint("request_id", "row_index", name="inference_row_key"),
)

# Shadow scoring (serving.shadow, RAW 0004): the @challenger's price of a /predict row next to
# the production price that was served, keyed like the row's inference_requests entry.
shadow_predictions = sa.Table(
    "shadow_predictions",
    metadata,
    sa.Column("request_id", sa.Uuid, primary_key=True),
    sa.Column("row_index", sa.Integer, primary_key=True),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("production_version", sa.Text, nullable=False),
    sa.Column("production_prediction", sa.Float(53), nullable=False),
    sa.Column("challenger_version", sa.Text, nullable=False),
    sa.Column("challenger_prediction", sa.Float(53)),  # NULL: not finite
    sa.Column("state", sa.Text),  # the listing's, for disagreement by state
    sa.Index("shadow_by_versions", "model_name", "challenger_version", "production_version"),
)

# Live drift (tasador.loop.monitor, RAW 0005): each comparison of the requests served with the
# production model's training rows. Kept next to the requests it covers so the watermark and the
# rows it counts live in one database, and so serving (which reaches only RAW) can publish the
# latest as metrics. A window (after, through] is stored once: a run repeating it adds nothing.
live_drift_checks = sa.Table(
    "live_drift_checks",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "checked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("after_request_id", sa.BigInteger, nullable=False),  # the watermark it started at
    sa.Column("through_request_id", sa.BigInteger, nullable=False),  # the last request it read
    sa.Column("rows", sa.Integer, nullable=False),  # requests (listings) compared
    sa.Column("compared", sa.Boolean, nullable=False),  # False: too few rows to compare
    sa.Column("alarm", sa.Boolean, nullable=False),
    sa.Column("drift_share", sa.Float(53)),  # share of features that moved; NULL: not compared
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("result", sa.JSON, nullable=False),  # tasador.core.evidence.LiveDrift
    sa.UniqueConstraint("after_request_id", "through_request_id", name="live_drift_window"),
)
