"""A small world for the UI: two batches collected and decided, two model versions promoted
one after the other with their SHAP comparison, and the prediction API serving the latest."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest

from experiments import promotions, registry, runs
from tasador.core import db
from tasador.core.cleaning import clean_frame
from tasador.core.config import Settings, get_settings, settings_env
from tasador.loop import decide
from tests.helpers.listings import generate_listings
from tests.helpers.mlflow import register
from tests.helpers.processes import stopping_embedded
from tests.helpers.search import load_batches
from tests.helpers.serving import ranges_of, ready_version, running, wait_until
from tests.helpers.ui import World, log_shap


@pytest.fixture(autouse=True)
def _serving_fails_fast(fail_fast_mlflow: None) -> None:
    """The UI's API polls the registry as `tasador serve` does."""


@pytest.fixture(scope="session")
def world(
    make_migrated_database: Callable[[str], str],
    mlflow_server: str,
    raw_sample: pd.DataFrame,
    clean_sample: pd.DataFrame,
    xgb_model: Any,
    lgbm_model: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("ui-state"),
        raw_db_url=make_migrated_database("raw"),
        clean_db_url=make_migrated_database("clean"),
        mlflow_tracking_uri=mlflow_server,
        model_name=f"ui-test-{tag}",
        experiment_name=f"ui-{tag}",
        serving_poll_s=0.5,
        _env_file=None,
    )
    batch_ids = load_batches(settings, raw_sample, [2_500, 2_500])
    for batch_id in batch_ids:
        decide.decide_batch(settings, batch_id)
    first = register(settings, xgb_model, clean_sample, family="xgboost", batch_ids=batch_ids[:1])
    unseen, _ = clean_frame(generate_listings(1_000, seed=31))
    second = register(
        settings,
        lgbm_model,
        clean_sample,
        family="lightgbm",
        batch_ids=batch_ids,
        price_ranges=ranges_of(lgbm_model, clean_sample, unseen.reset_index(drop=True)),
    )
    # The second version's holdout errors in dollars and shares, as the Models page reads them.
    run_of_second = registry.connect(settings).get_model_version(settings.mlflow.model_name, second)
    runs.log(
        registry.connect(settings),
        run_of_second.run_id,
        metrics={"holdout_mae": 182407.5049, "holdout_mape": 0.3577},
    )
    engine = db.engine("clean", settings.databases)
    for version, previous in ((first, None), (second, first)):
        verdict = promotions.Judgement(
            previous_version=None if previous is None else int(previous),
            promoted=True,
            challenger_rmsle=0.5 if previous is None else 0.45,
            previous_rmsle=None if previous is None else 0.5,
            summary=f"Version {version} promoted.",
            guard="first version" if previous is None else "evidence",
            improvement_low=None if previous is None else 0.061,
            improvement_high=None if previous is None else 0.138,
        )
        promotions.decide(
            engine,
            model_name=settings.mlflow.model_name,
            challenger_version=int(version),
            margin=0.01,
            holdout_rows=1_000,
            study_name=f"{settings.mlflow.model_name}-batches-1-2",
            retrain_decision_id=None,
            judge=lambda verdict=verdict: verdict,
            move_alias=lambda: None,  # register() moved it already
        )
    rows = clean_sample.sample(80, random_state=0)
    log_shap(settings, first, xgb_model, None, rows)
    log_shap(settings, second, lgbm_model, xgb_model, rows)
    with stopping_embedded(settings), running(settings) as (url, _):
        wait_until(lambda: ready_version(url) == second, 60, "the API serves the latest version")
        yield World(settings, url, (first, second), batch_ids)


@pytest.fixture
def ui_env(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Point `get_settings()` (what the pages read) at the world, optionally changed."""

    def apply(**changes: Any) -> None:
        settings = world.settings.updated(**{"serving_api_url": world.api_url, **changes})
        for key, value in settings_env(settings).items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()

    apply()
    yield apply
    get_settings.cache_clear()
