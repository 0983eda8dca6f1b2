"""Instant rollback: the previous production version stays loaded, so moving the alias back to
it swaps without a download; under load, no request fails and no third version answers."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from experiments import promotions, registry
from experiments.rollback import rollback
from serving import models
from serving.hot_swap import ModelWatcher
from serving.models import ServedModel
from tasador.core import db
from tasador.core.config import Settings
from tests.helpers.mlflow import register
from tests.helpers.serving import Load, wait_until
from tests.helpers.serving_workers import tasador_serve, versions, workers_serving


def test_the_previous_version_comes_back_from_memory(
    serving_settings: Settings, xgb_model: Any, lgbm_model: Any, clean_sample: pd.DataFrame
) -> None:
    loads: list[str] = []

    def counted(client: MlflowClient, settings: Settings, version: ModelVersion) -> ServedModel:
        loads.append(str(version.version))
        return models.load(client, settings, version)

    watcher = ModelWatcher(serving_settings, load=counted)
    first = register(serving_settings, xgb_model, clean_sample, family="xgboost")
    watcher.check()
    first_served = watcher.current
    second = register(serving_settings, lgbm_model, clean_sample, family="lightgbm")
    watcher.check()
    second_served = watcher.current
    assert second_served is not None and second_served.info.version == second
    assert watcher.previous is first_served

    client = registry.connect(serving_settings)
    registry.set_production(client, serving_settings.mlflow, first)
    watcher.check()
    assert watcher.current is first_served  # the very object: nothing downloaded
    assert watcher.previous is second_served
    swap = watcher.status.last_swap
    assert swap is not None and swap.version == first and swap.from_memory
    print(f"swap from memory: {swap.seconds * 1000:.2f} ms")

    registry.set_production(client, serving_settings.mlflow, second)  # and forth again
    watcher.check()
    assert watcher.current is second_served
    assert loads == [first, second]  # each version loaded once


def test_rollback_under_load_with_zero_failed_requests(
    serving_settings: Settings, xgb_model: Any, lgbm_model: Any, clean_sample: pd.DataFrame
) -> None:
    settings = serving_settings
    first = register(settings, xgb_model, clean_sample, family="xgboost")
    with tasador_serve(settings, workers=2) as url:

        def every_worker_serves(version: str) -> bool:
            seen = workers_serving(url, 20)
            return len(seen) == 2 and versions(seen) == {version}

        wait_until(lambda: every_worker_serves(first), 180, "both workers serve the first")
        second = register(settings, lgbm_model, clean_sample, family="lightgbm")
        wait_until(lambda: every_worker_serves(second), 60, "both workers serve the second")

        with Load(url, threads=3) as load:
            wait_until(lambda: len(load.all()) > 60, 30, "requests flow")
            move = rollback(settings, "bad prices on the coast", to_version=int(first))
            moved_at = time.monotonic()
            wait_until(lambda: every_worker_serves(first), 30, "both workers serve the first")
            wait_until(lambda: len(load.all()) > 3 * 60, 30, "requests keep flowing")
        answers = load.all()
        swaps = [body["last_swap"] for body in workers_serving(url, 20).values()]

    assert {status for _, status, _ in answers} == {200}, "a request failed during the rollback"
    assert {version for _, _, version in answers} == {first, second}  # no third version
    for thread_answers in load.answers:  # each client: the second, then only the first
        got = [v for _, _, v in thread_answers]
        assert got == sorted(got, key=lambda v: v == first)
    last_second = max(t for t, _, v in answers if v == second)
    switched_s = last_second - moved_at
    print(f"every answer from version {first} {switched_s:.2f}s after the rollback")
    assert switched_s < settings.serving.serving_poll_s + 3.0  # one poll interval, plus slack
    assert all(s["version"] == first and s["from_memory"] for s in swaps), swaps
    print("swaps from memory (ms):", [s["ms"] for s in swaps])

    history = promotions.alias_history(
        db.engine("clean", settings.databases), settings.mlflow.model_name
    )
    assert history[-1] == move and move.cause == "rollback" and move.version == int(first)
    assert move.reason == "bad prices on the coast" and move.previous_version == int(second)
