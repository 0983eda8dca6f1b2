"""Lineage end to end: batches stored and cleaned, a retrain decision, a real study promoted to
production, a request answered by the real API and logged, then the chain read back from the
request, the version and the batch."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from experiments import champion, search_worker
from serving.api import REQUEST_ID_HEADER, create_app
from tasador.core import db, decisions_store, raw_store
from tasador.core.config import Settings
from tasador.core.errors import BadInput, NotFound
from tasador.loop import provenance, training
from tests.experiments.conftest import (
    load_batches,
    search_settings,  # noqa: F401  (a fixture)
)

LISTING = {"bed": 3, "bath": 2, "house_size": 1500, "state": "Texas", "city": "Austin"}


@dataclass(frozen=True)
class Served:
    """The state a lineage query reads: what trained version 1 and one request it answered."""

    settings: Settings
    trained: list[int]  # batch ids version 1 learned from
    later: int  # a batch stored after the training
    decision_id: int
    study_name: str
    request_id: str


def serve_one_request(settings: Settings, raw_sample) -> Served:
    """Train, promote and answer one /predict through the real API (its log flushed on exit)."""
    ids = load_batches(settings, raw_sample.iloc[:1500], [600, 600, 300])
    clean = db.engine("clean", settings.databases)
    decision = decisions_store.save(clean, ids[1], "retrain", "state drifted", {"checks": []})
    plan = training.plan_retraining(settings, decision.id, batch_ids=ids[:2])
    search_worker.run_worker(plan.study_name, settings.updated(search_trials=2))
    assert champion.finish_study(plan.study_name, settings).promoted
    with TestClient(create_app(settings)) as api:
        deadline = time.monotonic() + 60
        while api.get("/ready").status_code != 200:  # the model loads off the request path
            assert time.monotonic() < deadline, "the API never loaded the production model"
            time.sleep(0.2)
        response = api.post("/predict", json=LISTING)
        assert response.status_code == 200, response.text
    return Served(
        settings, ids[:2], ids[2], decision.id, plan.study_name, response.headers[REQUEST_ID_HEADER]
    )


@pytest.fixture
def served(search_settings, raw_sample) -> Served:  # noqa: F811
    return serve_one_request(search_settings.updated(search_trials=2), raw_sample)


def test_a_request_leads_to_its_version_decision_study_and_batch_hashes(served):
    found = provenance.request_lineage(served.settings, served.request_id)
    [row] = found.requests
    assert row.endpoint == "predict" and row.status_code == 200 and row.prediction > 0
    chain = found.version
    assert (
        chain is not None and chain.version == 1 and chain.aliases == ["challenger", "production"]
    )
    assert chain.study_name == served.study_name and chain.study_run_id is not None
    assert chain.training_run_id and chain.training_run_id != chain.study_run_id
    assert chain.decision is not None and chain.decision.decision_id == served.decision_id
    assert chain.decision.reason == "state drifted"
    assert chain.promotion is not None and chain.promotion.promoted
    raw = db.engine("raw", served.settings.databases)
    assert [(b.batch_id, b.payload_sha256) for b in chain.batches] == [
        (b, raw_store.get_batch(raw, b).payload_sha256) for b in served.trained
    ]
    assert chain.requests_answered == 1
    # The same request by its row id; the same chain from the version itself.
    assert provenance.request_lineage(served.settings, str(row.id)).version == chain
    assert provenance.version_chain(served.settings, 1) == chain


def test_a_batch_lists_the_versions_that_learned_from_it(served):
    learned = provenance.batch_lineage(served.settings, served.trained[0])
    assert [v.version for v in learned.versions] == [1]
    assert learned.versions[0].requests_answered == 1
    untouched = provenance.batch_lineage(served.settings, served.later)
    assert untouched.batch.batch_id == served.later and untouched.versions == []


def test_unknown_ids_are_clear_errors(served):
    with pytest.raises(NotFound, match="no logged inference request"):
        provenance.request_lineage(served.settings, str(uuid.uuid4()))
    with pytest.raises(BadInput, match="neither"):
        provenance.request_lineage(served.settings, "yesterday")
    with pytest.raises(NotFound, match="no version 7"):
        provenance.version_chain(served.settings, 7)
    with pytest.raises(NotFound, match="no RAW batch"):
        provenance.batch_lineage(served.settings, 10**9)
