"""Data page (streamlit AppTest) against the world's real RAW and CLEAN databases."""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from tasador.core import clean_store, db, decisions_store, live_drift_store, tables
from tasador.core.narrative import live_summary
from tasador.core.services import free_port
from tests.helpers import REPO
from tests.helpers.live_drift import stored_check
from tests.helpers.ui import World

PAGE = str(REPO / "app" / "views" / "data.py")


def page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=60).run()


def counts(engine: sa.Engine, table: sa.Table) -> dict[int, int]:
    """Rows per batch, counted in the database itself."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.batch_id, sa.func.count()).group_by(table.c.batch_id))
        return dict(rows.all())


def test_batches_with_row_counts_cleaning_and_decisions(world: World, ui_env: Callable) -> None:
    at = page()
    assert not at.exception and not at.error, [e.value for e in at.error]
    clean = db.engine("clean", world.settings.databases)
    clean_rows = counts(clean, tables.clean.listings)
    raw_rows = counts(db.engine("raw", world.settings.databases), tables.raw.batch_rows)
    decisions = decisions_store.latest_by_batch(clean)
    reports = clean_store.cleaning_reports(clean)

    table = at.dataframe[0].value
    assert table["batch"].tolist() == world.batch_ids
    assert table["number"].tolist() == [0, 1]
    assert table["group"].tolist() == [1, 1]
    for row in table.to_dict("records"):
        batch = row["batch"]
        assert row["rows received"] == raw_rows[batch] == 2_500
        assert row["rows clean"] == clean_rows[batch]  # as CLEAN holds them
        assert row["dropped"] == sum(reports[batch].report["dropped"].values())
        assert raw_rows[batch] - row["dropped"] == clean_rows[batch]
        assert row["decision"] == decisions[batch].verdict
    assert set(table["decision"]) <= {"retrain", "skip"}
    assert table["decision"].iloc[0] == "retrain"  # the first batch is the baseline

    # One expander per batch, newest first, with the decision's paragraph and the cleaning rules.
    assert [e.label for e in at.expander] == [
        f"Batch {b} (number {n}): {decisions[b].verdict}"
        for n, b in reversed(list(enumerate(world.batch_ids)))
    ]
    for expander in at.expander:
        batch = int(expander.label.split()[1])
        assert decisions[batch].reason in [m.value for m in expander.markdown]
        dropped, fixed = (json.loads(j.value) for j in expander.json)
        assert dropped == reports[batch].report["dropped"]
        assert fixed == {k: v for k, v in reports[batch].report["fixed"].items() if v}


def test_clean_down_is_said_in_words(world: World, ui_env: Callable) -> None:
    ui_env(clean_db_url=f"postgresql://tasador:secret@127.0.0.1:{free_port()}/clean")
    at = page()
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("The RAW and CLEAN databases cannot be read.")
    assert "connection failed" in error.value and "secret" not in error.value
    assert not at.dataframe and not at.expander


def test_the_newest_live_drift_check_is_shown(world: World, ui_env: Callable) -> None:
    stored_check(world.settings, rows=400, fired=True, after=10_000)
    newest = live_drift_store.latest(db.engine("raw", world.settings.databases))
    assert newest is not None and newest.alarm
    at = page()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [warning] = at.warning
    assert warning.value == f"Check {newest.check_id}: {live_summary(newest)}"
    assert "state never seen in training" in warning.value
    checks = at.dataframe[1].value
    assert checks["check"].iloc[0] == newest.check_id
    assert checks[["requests", "compared", "alarm"]].iloc[0].tolist() == [400, True, True]
