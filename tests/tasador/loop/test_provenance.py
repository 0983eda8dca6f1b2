"""Lineage end to end: batches stored and cleaned, a retrain decision, a real study promoted to
production, a request answered by the real API and logged, then the chain read back from the
request, the version and the batch."""

from __future__ import annotations

import uuid

import pytest

from tasador.core import db, raw_store
from tasador.core.errors import BadInput, NotFound
from tasador.loop import provenance
from tests.helpers.provenance import Served, serve_one_request


@pytest.fixture
def served(search_settings, raw_sample) -> Served:
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
