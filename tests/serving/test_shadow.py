"""The shadow challenger: @challenger prices a sample of live rows next to production, off the
request path, each row stored once (also with two serving processes); a full queue drops."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from experiments import registry
from serving.fast_path import FastScorer
from serving.schema import Listing
from tasador.core import db, shadow_store
from tasador.core.config import Settings
from tests.helpers.mlflow import register
from tests.helpers.serving import LISTING, ready_version, running, scorer_of, wait_until


@pytest.fixture
def two_versions(
    serving_settings: Settings, xgb_model: Any, lgbm_model: Any, clean_sample: pd.DataFrame
) -> tuple[Settings, str, str]:
    """Production (xgboost) and a challenger not promoted (lightgbm), every request shadowed."""
    settings = serving_settings.updated(serving_shadow_share=1.0)
    production = register(settings, xgb_model, clean_sample, family="xgboost")
    challenger = register(settings, lgbm_model, clean_sample, family="lightgbm", promote=False)
    registry.connect(settings).set_registered_model_alias(
        settings.mlflow.model_name, registry.CHALLENGER_ALIAS, challenger
    )
    return settings, production, challenger


def shadow_rows(settings: Settings) -> list[sa.Row[Any]]:
    with db.engine("raw", settings.databases).connect() as conn:
        return list(conn.execute(sa.text("SELECT * FROM shadow_predictions")))


def test_both_versions_logged_once_per_row_with_two_workers(
    two_versions: tuple[Settings, str, str], lgbm_model: Any
) -> None:
    settings, production, challenger = two_versions
    with ExitStack() as stack:
        # Two serving processes' worth of state on one state folder: one leads, one follows.
        servers = [stack.enter_context(running(settings)) for _ in range(2)]
        for url, service in servers:
            wait_until(lambda u=url: ready_version(u) == production, 60, "production loaded")
            wait_until(
                lambda s=service: s.shadow.watcher.current is not None, 60, "challenger loaded"
            )
        assert sorted(s.shadow.watcher.shared.leading for _, s in servers) == [False, True]
        answers: dict[str, list[float]] = {}
        body = [LISTING, {**LISTING, "state": "Ohio", "bed": 5}, {**LISTING, "city": "Dallas"}]
        for i in range(6):
            url = servers[i % 2][0]
            response = httpx.post(f"{url}/predict", json=body if i % 3 else LISTING, timeout=10)
            assert response.status_code == 200
            assert response.json()["model"]["version"] == production
            answers[response.headers["X-Request-ID"]] = response.json()["predictions"]
        expected = sum(len(p) for p in answers.values())
        wait_until(lambda: len(shadow_rows(settings)) >= expected, 30, "shadow rows written")
        ready = httpx.get(f"{servers[0][0]}/ready").json()["shadow"]
        assert ready["challenger_version"] == challenger and ready["dropped_rows"] == 0
        metrics = httpx.get(f"{servers[0][0]}/metrics").text
        assert "tasador_shadow_scored_rows_total" in metrics

    stored = shadow_rows(settings)
    assert len(stored) == expected  # exactly once: each request by the process that answered it
    assert {(str(r.request_id), r.row_index) for r in stored} == {
        (rid, i) for rid, prices in answers.items() for i in range(len(prices))
    }
    for row in stored:
        assert (row.production_version, row.challenger_version) == (production, challenger)
        assert row.production_prediction == answers[str(row.request_id)][row.row_index]
    ohio = next(r for r in stored if r.state == "Ohio")
    listing = Listing.model_validate_json(json.dumps({**LISTING, "state": "Ohio", "bed": 5}))
    assert ohio.challenger_prediction == pytest.approx(
        float(scorer_of(lgbm_model)[0].predict([listing])[0])
    )
    engine = db.engine("raw", settings.databases)
    assert shadow_store.count(engine, settings.mlflow.model_name, challenger, None) == expected


class Stuck(FastScorer):
    """A challenger that prices nothing until released (fault injection: a slow challenger)."""

    def __init__(self, inner: FastScorer) -> None:  # reuses the inner scorer's artifact
        self.inner, self.artifact = inner, inner.artifact
        self.release = threading.Event()

    def predict(self, listings: Sequence[Listing]) -> np.ndarray:
        self.release.wait(60)
        return self.inner.predict(listings)


def test_full_queue_drops_and_counts_without_failing_requests(
    two_versions: tuple[Settings, str, str],
) -> None:
    settings, production, challenger = two_versions
    with running(settings) as (url, service):
        wait_until(lambda: ready_version(url) == production, 60, "production loaded")
        watcher = service.shadow.watcher
        wait_until(lambda: watcher.current is not None, 60, "challenger loaded")
        assert watcher.current is not None
        stuck = Stuck(watcher.current.scorer)
        watcher.current = dataclasses.replace(watcher.current, scorer=stuck)
        service.shadow.max_queued_rows = 3
        statuses = [httpx.post(f"{url}/predict", json=LISTING, timeout=10) for _ in range(10)]
        assert [r.status_code for r in statuses] == [200] * 10  # never slowed nor failed
        # Three rows fit (the one being scored still counts until written); seven dropped.
        assert service.shadow.stats.dropped_rows == 7
        assert "tasador_shadow_dropped_rows_total 7.0" in httpx.get(f"{url}/metrics").text
        stuck.release.set()
        wait_until(lambda: service.shadow.stats.written_rows == 3, 30, "queued rows written")
    assert {r.challenger_version for r in shadow_rows(settings)} == {challenger}
    assert len(shadow_rows(settings)) == 3
