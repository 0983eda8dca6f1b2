"""The SHAP explainer is ready with the model: built when a version loads, not by the first
``/explain``, so a flood of explain clients gets explanations at the rate the cap allows.

Real API (uvicorn in a thread) and the session's MLflow registry; no /explain is sent before
the explainer is built.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pandas as pd
import pytest

from serving import explanations
from tasador.core.config import Settings
from tasador.core.errors import BadInput
from tests.helpers.broken_models import NaNScorer
from tests.helpers.mlflow import register
from tests.helpers.serving import LISTING, in_memory, ready_version, running, wait_until

FLOOD_CLIENTS = 16
FLOOD_S = 2.0


def flood(url: str) -> Counter[int]:
    """The statuses of /explain sent by FLOOD_CLIENTS clients without pause for FLOOD_S."""

    def client() -> Counter[int]:
        statuses: Counter[int] = Counter()
        stop = time.monotonic() + FLOOD_S
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                statuses[http.post(f"{url}/explain", json=LISTING).status_code] += 1
        return statuses

    with ThreadPoolExecutor(FLOOD_CLIENTS) as pool:
        return sum(
            (f.result() for f in [pool.submit(client) for _ in range(FLOOD_CLIENTS)]), Counter()
        )


@pytest.mark.server
def test_the_explainer_is_built_at_load_and_a_flood_gets_explanations(
    serving_settings: Settings, xgb_model: Any, lgbm_model: Any, clean_sample: pd.DataFrame
) -> None:
    settings = serving_settings.updated(serving_max_explains=2)
    with running(settings) as (url, service):
        first = register(settings, xgb_model, clean_sample, family="xgboost")
        wait_until(lambda: ready_version(url) == first, 120, "the first version serves")
        # Built with no /explain asked for it.
        wait_until(lambda: service.explainers.builds == 1, 60, "the explainer is built")
        assert service.explainers.kept() == [first]

        statuses = flood(url)
        print(f"{FLOOD_CLIENTS} clients for {FLOOD_S:.0f}s, cap 2: {dict(statuses)}")
        assert set(statuses) <= {200, 429}, statuses  # never "being built" once built
        assert statuses[200] >= 5, statuses  # not every call refused (26 of 1,546 measured)
        assert service.explainers.builds == 1  # built once, not per request

        # A swap builds the new version's explainer; the previous version stays loaded (for an
        # instant rollback) with its explainer, the one before it is dropped with its model.
        second = register(settings, lgbm_model, clean_sample, family="lightgbm")
        wait_until(lambda: ready_version(url) == second, 120, "the second version serves")
        wait_until(lambda: service.explainers.builds == 2, 60, "its explainer is built")
        assert sorted(service.explainers.kept()) == sorted([first, second])
        third = register(settings, xgb_model, clean_sample, family="xgboost")
        wait_until(lambda: ready_version(url) == third, 120, "the third version serves")
        wait_until(lambda: service.explainers.builds == 3, 60, "its explainer is built")
        assert sorted(service.explainers.kept()) == sorted([second, third])
        answer = httpx.post(f"{url}/explain", json=LISTING, timeout=30)
        assert answer.status_code == 200 and answer.json()["model"]["version"] == third


@pytest.mark.server
def test_explain_answers_503_being_built_without_taking_a_slot(
    serving_settings: Settings, xgb_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_build = explanations._build_explainer

    def held_build(served: Any) -> Any:
        release.wait(30)
        return real_build(served)

    monkeypatch.setattr(explanations, "_build_explainer", held_build)
    settings = serving_settings.updated(serving_max_explains=1)
    with running(settings) as (url, service):
        served = in_memory(xgb_model, settings.mlflow.model_name, "4")
        service.watcher.current = served
        service.explainers.prepare(served, [served])  # what a load does
        try:
            with httpx.Client(timeout=30) as http:
                answers = [http.post(f"{url}/explain", json=LISTING) for _ in range(3)]
                assert [a.status_code for a in answers] == [503] * 3  # not one 429
                assert answers[0].json()["detail"] == (
                    "explainer for version 4 is being built: retry later"
                )
                assert answers[0].headers["retry-after"] == "2"
                assert service.explaining == 0
                assert http.post(f"{url}/predict", json=LISTING).status_code == 200
                release.set()
                wait_until(lambda: service.explainers.builds == 1, 60, "the explainer is built")
                assert http.post(f"{url}/explain", json=LISTING).status_code == 200
        finally:
            release.set()


@pytest.mark.server
def test_a_model_shap_cannot_explain_gets_the_same_503_as_on_demand(
    serving_settings: Settings,
) -> None:
    model = NaNScorer(only_for={"bed": -1.0})  # finite prices, no scoring artifact
    with running(serving_settings) as (url, service):
        served = in_memory(model, serving_settings.mlflow.model_name, "5")
        service.watcher.current = served
        service.explainers.prepare(served, [served])  # what a load does
        wait_until(lambda: not service.explainers.building(served), 60, "the build ends")
        answer = httpx.post(f"{url}/explain", json=LISTING, timeout=30)
        with pytest.raises(BadInput) as on_demand:  # how the first /explain built it before
            explanations.Explainers().of(served)
    assert answer.status_code == 503
    assert answer.json()["detail"] == str(on_demand.value)
    assert str(on_demand.value).startswith("version 5 cannot be explained: ")
    assert service.explainers.builds == 0
