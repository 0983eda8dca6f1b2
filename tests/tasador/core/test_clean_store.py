import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from datasource.dirty import DirtyKnobs, corrupt
from datasource.generator import generate_listings
from tasador.core import clean_store, db, raw_store
from tasador.core.cleaning import clean_frame
from tasador.core.columns import RAW_COLUMNS
from tasador.core.holdout import is_holdout, row_hashes


def sample_rows(listings_csv, n):
    raw = pd.read_csv(listings_csv, dtype=object, keep_default_na=False, na_values=[""]).head(n)
    return [tuple(None if pd.isna(v) else v for v in r) for r in raw.itertuples(index=False)]


def store(settings, rows, number=0, sha=None):
    return raw_store.store_batch(
        db.engine("raw", settings.databases),
        group_number=1,
        day=None,
        batch_number=number,
        rows=rows,
        payload_sha256=sha or f"{number:064d}",
        source="test",
    )


def test_clean_batch_types_rows_keeps_lineage_and_is_idempotent(settings, listings_csv):
    raw, clean = db.engine("raw", settings.databases), db.engine("clean", settings.databases)
    batch = store(settings, sample_rows(listings_csv, 400))
    first = clean_store.clean_batch(raw, clean, batch.id).report
    again = clean_store.clean_batch(raw, clean, batch.id).report
    assert first.as_dict() == again.as_dict()
    listings = clean_store.load_listings(clean)
    assert len(listings) == first.rows_out > 390
    assert set(listings["batch_id"]) == {batch.id}
    assert list(listings.columns) == ["batch_id", "row_index", "is_holdout", *RAW_COLUMNS]
    assert listings["price"].dtype == "float64"
    assert str(listings["prev_sold_date"].dtype).startswith("datetime64")
    assert 0.1 < listings["is_holdout"].mean() < 0.3
    report = clean_store.cleaning_reports(clean)[batch.id]
    assert report.rows_in == 400 and report.rows_out == first.rows_out


def test_rows_already_stored_by_an_earlier_batch_are_not_stored_twice(settings, listings_csv):
    raw, clean = db.engine("raw", settings.databases), db.engine("clean", settings.databases)
    rows = sample_rows(listings_csv, 300)
    first = store(settings, rows[:200], number=0)
    second = store(settings, rows[100:], number=1)
    clean_store.clean_batch(raw, clean, first.id)
    report = clean_store.clean_batch(raw, clean, second.id).report
    assert report.dropped["duplicate_of_earlier_batch"] >= 95
    listings = clean_store.load_listings(clean)
    assert listings.duplicated(subset=list(RAW_COLUMNS)).sum() == 0


def test_holdout_is_stable_for_the_same_content(settings, listings_csv):
    raw, clean = db.engine("raw", settings.databases), db.engine("clean", settings.databases)
    rows = sample_rows(listings_csv, 300)
    batch = store(settings, rows)
    clean_store.clean_batch(raw, clean, batch.id)
    before = clean_store.load_listings(clean, holdout=True)
    clean_store.clean_batch(raw, clean, batch.id)
    after = clean_store.load_listings(clean, holdout=True)
    assert len(before) > 0 and before.equals(after)
    assert len(clean_store.load_listings(clean, batch_ids=[batch.id], holdout=False)) + len(
        after
    ) == len(clean_store.load_listings(clean))


def test_cleaning_an_unknown_batch_is_a_clear_error(settings):
    with pytest.raises(LookupError, match="999"):
        clean_store.clean_batch(
            db.engine("raw", settings.databases), db.engine("clean", settings.databases), 999
        )


def test_two_cleanings_of_one_batch_at_once_both_record_the_right_counts(settings, listings_csv):
    raw, clean = db.engine("raw", settings.databases), db.engine("clean", settings.databases)
    batch = store(settings, sample_rows(listings_csv, 400))
    start = threading.Barrier(2)

    def run(_: int) -> int:
        start.wait()
        return clean_store.clean_batch(raw, clean, batch.id).report.rows_out

    with ThreadPoolExecutor(max_workers=2) as pool:
        rows_out = list(pool.map(run, range(2)))
    expected = clean_frame_rows(sample_rows(listings_csv, 400))
    assert rows_out == [expected, expected] and expected > 390
    assert clean_store.cleaning_reports(clean)[batch.id].rows_out == expected
    listings = clean_store.load_listings(clean)
    assert len(listings) == expected  # no listing twice, none lost
    assert not listings.duplicated(["batch_id", "row_index"]).any()


def clean_frame_rows(rows) -> int:
    frame = pd.DataFrame(rows, columns=list(RAW_COLUMNS), dtype=object)
    return clean_frame(frame)[1].rows_out


# Rows the generator does not make: text the old CSV path had to quote, non-ASCII, odd numbers,
# a literal \N (the old CSV path's NULL marker, which it stored as NULL), NULL everywhere else.
ODD_ROWS = [
    tuple(v or None for v in row.split("|"))
    for row in (
        '101.0|sold|250000.0|3.0|2.0|0.1|77.0|Coeur d"Alene, "N"|Idaho|83814.0|1200.0|1999-12-31',
        "102.0|For Sale|1e6|inf|-0.0|1e-300|78.0|São Paulo\tnorte|Pará|1.0|99999.0|2000-01-01",
        "||350000|||||\\N||||",
        "103|ready_to_build| 420000 |4|3|0.5|79|Line\nbreak|Ohio|99999|2500|1900-01-01",
    )
]


def test_clean_rows_are_exactly_what_the_cleaning_rules_make(settings):
    """A dirty generated batch goes through RAW and CLEAN: every stored value, NULL, hash and
    holdout flag is the one the rules give on the same rows, and so is the report."""
    knobs = DirtyKnobs(
        missing_rate=0.05, duplicate_rate=0.05, impossible_rate=0.05, wrong_type_rate=0.05
    )
    generated = corrupt(generate_listings(3000, seed=5), knobs, np.random.default_rng(5))
    rows = [
        tuple(None if pd.isna(v) else v for v in r) for r in generated.itertuples(index=False)
    ] + ODD_ROWS
    raw, clean = db.engine("raw", settings.databases), db.engine("clean", settings.databases)
    batch = store(settings, rows)
    report = clean_store.clean_batch(raw, clean, batch.id).report

    # RAW keeps each value as its text, as psycopg writes it.
    as_text = [tuple(None if v is None else str(v) for v in r) for r in rows]
    want, want_report = clean_frame(pd.DataFrame(as_text, columns=list(RAW_COLUMNS), dtype=object))
    hashes = row_hashes(want)
    assert report.as_dict() == {
        **want_report.as_dict(),
        "dropped": {**want_report.dropped, "duplicate_of_earlier_batch": 0},
    }
    assert sum(report.dropped.values()) > 0 and sum(report.fixed.values()) > 0  # it was dirty

    got = clean_store.load_listings(clean, [batch.id])
    want = want.assign(batch_id=batch.id, row_index=want.index, is_holdout=is_holdout(hashes))
    want = want.loc[:, list(got.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    with clean.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT row_hash FROM listings ORDER BY batch_id, row_index"
        ).scalars()
        assert list(stored) == hashes.tolist()


def _wait_for_a_blocked_cleaning(clean, statement: str) -> int:
    """The backend id of the cleaning once it waits for a lock in ``statement``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with clean.connect() as conn:  # a new transaction: pg_stat_activity is read afresh
            pid = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND starts_with(query, :statement)"
                ),
                {"statement": statement},
            ).scalar()
        if pid is not None:
            return int(pid)
        time.sleep(0.05)
    raise AssertionError(f"no cleaning waited in {statement}")


@pytest.mark.parametrize("earlier", [False, True], ids=["first cleaning", "re-cleaning"])
def test_a_database_lost_mid_write_keeps_clean_as_it_was(settings, listings_csv, earlier):
    """The cleaning's connection is killed inside its write transaction (first cleaning: while
    it inserts its listings; re-cleaning: while it replaces the old ones). CLEAN keeps what it
    had, and cleaning again stores the batch in full."""
    raw, clean = db.engine("raw", settings.databases), db.engine("clean", settings.databases)
    batch = store(settings, sample_rows(listings_csv, 300))
    before = clean_store.clean_batch(raw, clean, batch.id).report if earlier else None
    listings_before = clean_store.load_listings(clean)
    expected = clean_frame(raw_store.read_batch_rows(raw, batch.id))[0]
    blocker = clean.connect()
    transaction = blocker.begin()
    if earlier:  # hold a lock on one old listing: the cleaning's DELETE waits for it
        blocker.exec_driver_sql("SELECT 1 FROM listings LIMIT 1 FOR UPDATE")
        statement = "DELETE FROM listings"
    else:  # an uncommitted listing with the same content: the cleaning's INSERT waits for it
        row_hash = int(row_hashes(expected)[0])
        blocker.exec_driver_sql(
            f"INSERT INTO listings (batch_id, row_index, row_hash, is_holdout, price) "
            f"VALUES (999, 0, {row_hash}, false, 1)"
        )
        statement = "INSERT INTO listings"
    with ThreadPoolExecutor(max_workers=1) as pool:
        cleaning = pool.submit(clean_store.clean_batch, raw, clean, batch.id)
        try:
            pid = _wait_for_a_blocked_cleaning(clean, statement)
            with clean.connect() as conn:
                conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
            with pytest.raises(sa.exc.DBAPIError):
                cleaning.result(timeout=30)
        finally:  # never leave the cleaning waiting
            transaction.rollback()
            blocker.close()

    pd.testing.assert_frame_equal(clean_store.load_listings(clean), listings_before)
    reports = clean_store.cleaning_reports(clean)
    if before is None:
        assert reports == {}
    else:
        assert reports[batch.id].report == before.as_dict()
    again = clean_store.clean_batch(raw, clean, batch.id).report
    assert again.rows_out == len(expected) == len(clean_store.load_listings(clean))


def test_listings_rebuilt_from_raw_are_what_clean_stored(settings, listings_csv):
    raw, clean = db.engine("raw", settings.databases), db.engine("clean", settings.databases)
    rows = sample_rows(listings_csv, 500)
    first = store(settings, rows[:200], number=0)
    second = store(settings, rows[100:350], number=1)  # 100 listings of the first again
    third = store(settings, rows[300:], number=2)
    for batch in (first, second, third):
        clean_store.clean_batch(raw, clean, batch.id)

    # The second alone: the first is read too, for the listings CLEAN stored with it.
    rebuilt = clean_store.rebuild_listings(raw, [second.id], cleaned_before=[first.id])
    stored = clean_store.load_listings(clean, [second.id])
    pd.testing.assert_frame_equal(rebuilt.listings, stored)
    assert set(rebuilt.rows_sha256) == {first.id, second.id}
    assert rebuilt.rows_sha256[second.id] == raw_store.rows_sha256(raw, second.id)

    everything = clean_store.rebuild_listings(raw, [first.id, second.id, third.id])
    pd.testing.assert_frame_equal(everything.listings, clean_store.load_listings(clean))
    # Without the batch cleaned before it, the repeated listings come back: they are told apart.
    alone = clean_store.rebuild_listings(raw, [second.id]).listings
    assert len(alone) == len(stored) + 100
