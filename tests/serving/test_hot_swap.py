"""The alias moves under load; then MLflow goes away. Requests must not notice either.

These tests run their own MLflow server (the last one stops it), so the session's server and
the other tests never see the outage.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from tasador import startup
from tasador.core.config import Settings
from tests.helpers.mlflow import register
from tests.helpers.serving import LISTING, Load, ready_version, running, wait_until


@pytest.fixture(scope="module")
def own_mlflow(
    make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A private MLflow server (local artifacts); yields the settings that started it."""
    server = Settings(
        state_dir=tmp_path_factory.mktemp("own-mlflow"),
        mlflow_backend_url=make_database("mlflow"),
        _env_file=None,
    )
    try:
        startup.ensure_server(server)
        yield server
    finally:
        startup.stop_server(server)


@pytest.fixture
def swap_settings(serving_settings: Settings, own_mlflow: Settings) -> Settings:
    return serving_settings.updated(mlflow_tracking_uri=startup.ensure_server(own_mlflow))


def test_alias_moves_under_load_without_a_failed_request(
    swap_settings: Settings, xgb_model: Any, lgbm_model: Any, clean_sample: pd.DataFrame
) -> None:
    first = register(swap_settings, xgb_model, clean_sample, family="xgboost")
    with running(swap_settings) as (url, service):
        wait_until(lambda: ready_version(url) == first, 60, "the first version serves")
        with Load(url) as load:
            wait_until(lambda: len(load.all()) > 40, 30, "requests flow")
            second = register(swap_settings, lgbm_model, clean_sample, family="lightgbm")
            moved_at, polls_then = time.monotonic(), service.watcher.status.polls
            wait_until(
                lambda: any(v == second for _, _, v in load.all()), 60, "the new version answers"
            )
            swapped_after = service.watcher.status.polls - polls_then
            wait_until(lambda: len(load.all()) > 2 * 40, 30, "requests keep flowing")
        answers = load.all()
        metrics = httpx.get(f"{url}/metrics").text

    assert {status for _, status, _ in answers} == {200}, "a request failed during the swap"
    assert {version for _, _, version in answers} == {first, second}
    for thread_answers in load.answers:  # each client saw old answers, then only new ones
        versions = [v for _, _, v in thread_answers]
        assert versions == sorted(versions, key=lambda v: v == second)
    # Picked up by the first poll after the alias moved (a poll in flight may have missed it).
    assert swapped_after <= 2, f"{swapped_after} polls before the swap"
    first_new = min(t for t, _, v in answers if v == second)
    print(f"new version answered {first_new - moved_at:.2f}s after the alias moved")
    assert "tasador_model_swaps_total 2.0" in metrics  # the first load, then the move
    labels = f'alias="production",name="{swap_settings.mlflow.model_name}",version="{second}"'
    assert f"tasador_model_info{{{labels}}} 1.0" in metrics


def test_serving_goes_on_while_mlflow_is_down(
    swap_settings: Settings,
    own_mlflow: Settings,
    xgb_model: Any,
    clean_sample: pd.DataFrame,
) -> None:
    settings = swap_settings.updated(model_name=f"down-{uuid.uuid4().hex[:6]}")
    version = register(settings, xgb_model, clean_sample, family="xgboost")
    with running(settings) as (url, _):
        wait_until(lambda: ready_version(url) == version, 60, "the model serves")
        before = httpx.post(f"{url}/predict", json=LISTING).json()

        startup.stop_server(own_mlflow)

        def registry_reported_down() -> bool:
            return httpx.get(f"{url}/ready").json()["registry"]["reachable"] is False

        wait_until(registry_reported_down, 60, "/ready reports the registry unreachable")
        ready = httpx.get(f"{url}/ready")
        assert ready.status_code == 200 and ready.json()["model"]["version"] == version
        assert "unreachable" in ready.json()["registry"]["error"]
        for _ in range(20):
            answer = httpx.post(f"{url}/predict", json=LISTING)
            assert answer.status_code == 200
            assert answer.json() == before
        assert httpx.get(f"{url}/model").json()["version"] == version
