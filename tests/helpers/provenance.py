"""A request answered by a version trained and promoted for real: what lineage queries read."""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi.testclient import TestClient

from experiments import champion, search_worker
from serving.api import REQUEST_ID_HEADER, create_app
from tasador.core import db, decisions_store
from tasador.core.config import Settings
from tasador.loop import training
from tests.helpers.search import load_batches

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
