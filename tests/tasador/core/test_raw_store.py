import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from tasador.core import db, raw_store

ROW = (
    40618.0,
    "for_sale",
    239800.0,
    3.0,
    None,
    0.28,
    1693508.0,
    "Graham",
    "North Carolina",
    27253.0,
    "three",
    "2021-10-22",
)


def store(engine, sha="a" * 64, rows=(ROW, ROW)):
    return raw_store.store_batch(
        engine,
        group_number=3,
        day=None,
        batch_number=0,
        rows=list(rows),
        payload_sha256=sha,
        source="test",
    )


def test_rows_are_stored_as_received(settings):
    engine = db.engine("raw", settings.databases)
    stored = store(engine)
    assert stored.created and stored.row_count == 2
    rows = raw_store.read_batch_rows(engine, stored.id)
    first = rows.iloc[0]
    assert first["brokered_by"] == "40618.0" and first["price"] == "239800.0"
    assert pd.isna(first["bath"]) and first["house_size"] == "three"
    assert list(rows.index) == [0, 1]


def test_storing_the_same_batch_three_times_keeps_one_copy(settings):
    engine = db.engine("raw", settings.databases)
    ids = {store(engine).id for _ in range(3)}
    assert len(ids) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from batches")).scalar() == 1
        assert conn.execute(sa.text("select count(*) from batch_rows")).scalar() == 2


def test_a_different_payload_for_the_same_batch_number_is_kept_apart(settings):
    engine = db.engine("raw", settings.databases)
    first, second = store(engine, "a" * 64), store(engine, "b" * 64, rows=(ROW,))
    assert first.id != second.id and second.created
    assert [b.row_count for b in raw_store.list_batches(engine)] == [2, 1]


def test_a_failed_row_copy_leaves_no_batch_behind(settings):
    engine = db.engine("raw", settings.databases)
    bad_rows = [ROW, ROW[:5]]  # too short: COPY fails mid-way
    with pytest.raises(psycopg.Error):
        store(engine, rows=bad_rows)
    assert raw_store.list_batches(engine) == []


def test_the_rows_hash_changes_with_any_stored_value_and_tells_null_from_empty_text(settings):
    engine = db.engine("raw", settings.databases)
    stored = store(engine)
    first = raw_store.rows_sha256(engine, stored.id)
    frame, digest = raw_store.read_batch_rows_hashed(engine, stored.id)
    assert digest == first == raw_store.rows_sha256(engine, stored.id)  # stable, one read
    assert frame.equals(raw_store.read_batch_rows(engine, stored.id))
    seen = {first}
    for change in ("bath = ''", "city = 'graham'", "price = '239800'"):
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE batch_rows SET {change} WHERE row_index = 1"))
        now = raw_store.rows_sha256(engine, stored.id)
        assert now not in seen, change  # NULL -> '' included: the CSV quotes empty text
        seen.add(now)
