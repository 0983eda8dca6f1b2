"""Fixtures of the serving tests: small real models of the training code, registered in a real
MLflow server, and settings pointing serving at them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn

from experiments import registry, runs
from experiments.families import build_model
from experiments.spaces import load_spaces
from serving.api import Service, create_app
from serving.models import ModelInfo, Scorer, ServedModel
from tasador.core import lineage
from tasador.core.columns import TARGET
from tasador.core.config import Settings


@pytest.fixture(autouse=True)
def fail_fast_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `tasador serve` sets: a registry poll fails at once instead of retrying for minutes."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def fit(family: str, frame: pd.DataFrame, **params: Any) -> Any:
    model = build_model(family, params, n_jobs=1, seed=0)
    return model.fit(frame.drop(columns=[TARGET]), frame[TARGET].to_numpy())


# Every family the search spaces define: a family added there is tested here without an edit.
FAMILY_NAMES = sorted(load_spaces())
SMALL_PARAMS: dict[str, dict[str, Any]] = {  # tiny budgets: the tests are about scoring
    "xgboost": {"n_estimators": 30, "max_depth": 4},
    "lightgbm": {"n_estimators": 30, "num_leaves": 8},
    "random_forest": {"n_estimators": 20, "min_samples_leaf": 3},
    "ridge": {"alpha": 1.0},
}


def small_model(family: str, frame: pd.DataFrame) -> Any:
    """A small fitted model of ``family`` (the estimator's defaults for a family not listed)."""
    return fit(family, frame, **SMALL_PARAMS.get(family, {}))


@pytest.fixture(scope="session")
def xgb_model(clean_sample: pd.DataFrame) -> Any:
    return fit("xgboost", clean_sample, n_estimators=30, max_depth=4)


@pytest.fixture(scope="session")
def lgbm_model(clean_sample: pd.DataFrame) -> Any:
    return fit("lightgbm", clean_sample, n_estimators=30, num_leaves=8)


def register(
    settings: Settings,
    model: Any,
    example: pd.DataFrame,
    *,
    family: str,
    batch_ids: tuple[int, ...] = (1, 2),
    promote: bool = True,
    validation: pd.DataFrame | None = None,
    holdout_rmsle: float = 0.5,
) -> str:
    """Register ``model`` as a new version the way training does; point the alias at it.

    ``validation``: rows (with prices) stored as its validation sample; ``holdout_rmsle``: the
    holdout RMSLE on record for it."""
    client = registry.connect(settings)
    experiment = runs.experiment_id(client, settings.mlflow.experiment_name)
    reason = f"Retrain. test model {family}"
    tags = {
        lineage.BATCH_IDS: lineage.encode_batch_ids(batch_ids),
        lineage.RETRAIN_REASON: reason,
        lineage.STUDY_NAME: f"{settings.mlflow.model_name}-batches-1-2",
        "family": family,
    }
    run_id = runs.create_run(client, experiment, f"refit-{family}", tags)
    runs.log(client, run_id, metrics={"holdout_rmsle": holdout_rmsle})
    example_rows = example.drop(columns=[TARGET]).head(3)
    background = example.drop(columns=[TARGET]).head(200)  # training rows: the SHAP reference
    version = registry.log_and_register(
        model, example_rows, settings, run_id, tags, background, validation
    )
    runs.end(client, run_id)
    if promote:
        client.set_model_version_tag(
            settings.mlflow.model_name, version.version, "promoted", "true"
        )
        client.set_model_version_tag(
            settings.mlflow.model_name, version.version, "decided_at", "2025-01-02T03:04:05+00:00"
        )
        client.set_model_version_tag(
            settings.mlflow.model_name,
            version.version,
            "decision",
            f"Version {version.version} wins.",
        )
        registry.set_production(client, settings, version.version)
    return str(version.version)


@pytest.fixture
def serving_settings(settings: Settings, mlflow_server: str) -> Settings:
    """Fresh RAW database and state, the session MLflow server, a private model name."""
    tag = uuid.uuid4().hex[:8]
    return settings.updated(
        mlflow_tracking_uri=mlflow_server,
        experiment_name=f"serving-{tag}",
        model_name=f"serving-test-{tag}",
        serving_poll_s=0.5,
        serving_log_flush_s=0.2,
        serving_max_rows=2_000,
    )


@contextmanager
def running(settings: Settings) -> Iterator[tuple[str, Service]]:
    """The API served by a real uvicorn server in a thread; yields its URL and its state."""
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers):
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app.state.service
    finally:
        server.should_exit = True
        thread.join(30)


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until ``check()`` holds; fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"not within {timeout_s:.0f}s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def ready_version(url: str) -> str | None:
    try:
        response = httpx.get(f"{url}/ready", timeout=5)
    except httpx.TransportError:
        return None
    model = response.json().get("model")
    return model["version"] if model else None


def in_memory(raw_model: Any, name: str = "realtor-test", version: str = "1") -> ServedModel:
    """A fitted model made ready to serve without the registry (for contract tests that are
    about the API, not about MLflow; the registry path has its own tests)."""
    scorer = Scorer(raw_model)
    info = ModelInfo(
        name=name,
        version=version,
        alias="production",
        run_id=None,
        family=None,
        registered_at=None,
        promoted_at=None,
        promotion=None,
        retrain_reason=None,
        study_name=None,
        batch_ids=[],
        batch_range=None,
        metrics={},
        loaded_at=datetime.now(UTC),
        scoring=scorer.how,
    )
    return ServedModel(info=info, scorer=scorer, raw_model=raw_model)
