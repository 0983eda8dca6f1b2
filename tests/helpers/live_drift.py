"""Served requests in RAW's inference log, written as serving writes them, for live drift."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from experiments.inputs import model_input
from serving.log_rows import Entry, write_entries
from tasador.core import db, live_drift_store
from tasador.core.config import DriftSettings, Settings
from tasador.core.evidence import LiveDrift, Thresholds, UnseenCategories
from tasador.core.tables.raw import live_drift_checks
from tests.helpers.serving import listings_of

OTHER_STATES = ["Alaska", "Hawaii", "Montana"]  # a mix of states unlike the generated one


def log_served(
    settings: Settings, frame: pd.DataFrame, version: str, per_request: int = 10
) -> None:
    """Log ``frame``'s rows (generated listings) as answered ``/predict`` requests of
    ``per_request`` listings each (and one refused request, which a live drift check must not
    read)."""
    typed = model_input(frame).assign(price=frame["price"])  # as CLEAN types the fields
    listings = listings_of(typed)
    entries = [
        Entry(
            endpoint=live_drift_store.PREDICT,
            status_code=200,
            requested_at=datetime.now(UTC),
            latency_ms=1.0,
            listings=listings[i : i + per_request],
            predictions=[300_000.0] * len(listings[i : i + per_request]),
            model_name=settings.mlflow.model_name,
            model_version=version,
        )
        for i in range(0, len(listings), per_request)
    ]
    refused = Entry(
        endpoint=live_drift_store.PREDICT,
        status_code=422,
        requested_at=datetime.now(UTC),
        latency_ms=1.0,
        body='{"state": 7}',
    )
    write_entries(db.engine("raw", settings.databases), [*entries, refused])


def stored_checks(settings: Settings) -> list[sa.Row[object]]:
    """Every stored live drift check, oldest first."""
    with db.engine("raw", settings.databases).connect() as conn:
        return list(conn.execute(sa.select(live_drift_checks).order_by(live_drift_checks.c.id)))


def stored_check(settings: Settings, *, rows: int, fired: bool, after: int) -> None:
    """A check as `tasador monitor` stores it: one unseen-category check, fired or not."""
    unseen = UnseenCategories(
        column="state", share=0.6 if fired else 0.0, expected_share=0.0, fired=fired, top=[]
    )
    result = LiveDrift(
        model_version="1",
        reference_batch_ids=[1],
        reference_rows=1_000,
        after_request_id=after,
        through_request_id=after + rows,
        rows=rows,
        min_rows=200,
        thresholds=Thresholds.from_settings(DriftSettings()),
        unseen=[unseen],
    )
    with db.engine("raw", settings.databases).begin() as conn:
        assert live_drift_store.save(conn, result, "test") is not None
