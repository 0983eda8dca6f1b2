"""The decisions table: one row per batch, idempotent saves, evidence round-trips as JSON."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from tasador.core import db, decisions_store
from tasador.core.config import Settings


@pytest.fixture
def engine(settings: Settings) -> sa.Engine:
    return db.engine("clean", settings.databases)


EVIDENCE = {"basis": "compared", "features": [{"column": "bed", "psi": 0.31, "moved": True}]}


def test_save_returns_the_stored_row_with_its_evidence(engine: sa.Engine) -> None:
    saved = decisions_store.save(engine, 3, "retrain", "bed moved.", EVIDENCE)
    assert saved.id > 0 and saved.batch_id == 3 and saved.verdict == "retrain"
    assert saved.evidence == EVIDENCE and saved.created_at is not None
    assert decisions_store.get(engine, 3) == saved
    assert decisions_store.get_by_id(engine, saved.id) == saved
    assert decisions_store.get(engine, 4) is None


def test_saving_again_keeps_the_first_decision(engine: sa.Engine) -> None:
    first = decisions_store.save(engine, 1, "skip", "nothing moved.", {})
    again = decisions_store.save(engine, 1, "retrain", "another opinion.", EVIDENCE)
    assert again == first
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM decisions")).scalar_one() == 1


def test_replace_overwrites_but_keeps_the_id(engine: sa.Engine) -> None:
    first = decisions_store.save(engine, 1, "skip", "nothing moved.", {})
    forced = decisions_store.save(engine, 1, "retrain", "forced.", EVIDENCE, replace=True)
    assert forced.id == first.id
    assert (forced.verdict, forced.reason, forced.evidence) == ("retrain", "forced.", EVIDENCE)
    assert forced.created_at >= first.created_at


def test_concurrent_saves_of_one_batch_agree_on_one_row(engine: sa.Engine) -> None:
    verdicts = ["retrain", "skip"] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        saved = list(
            pool.map(lambda v: decisions_store.save(engine, 9, v, f"{v} it.", {}), verdicts)
        )
    assert len({(d.id, d.verdict) for d in saved}) == 1


def test_latest_by_batch_maps_every_batch_to_its_decision(engine: sa.Engine) -> None:
    assert decisions_store.latest_by_batch(engine) == {}
    for batch_id, verdict in [(2, "skip"), (1, "retrain"), (5, "retrain")]:
        decisions_store.save(engine, batch_id, verdict, f"{verdict} for {batch_id}.", {})
    by_batch = decisions_store.latest_by_batch(engine)
    assert list(by_batch) == [1, 2, 5]
    assert [d.verdict for d in by_batch.values()] == ["retrain", "skip", "retrain"]


@pytest.mark.parametrize(
    ("verdict", "reason", "message"),
    [("maybe", "why not.", "verdict"), ("skip", "  ", "reason")],
)
def test_invalid_decisions_are_refused(
    engine: sa.Engine, verdict: str, reason: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        decisions_store.save(engine, 1, verdict, reason, {})  # type: ignore[arg-type]
    assert decisions_store.get(engine, 1) is None


def test_the_database_refuses_an_unknown_verdict_too(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            decisions_store.decisions.insert().values(
                batch_id=1, verdict="maybe", reason="x", evidence={}
            )
        )
