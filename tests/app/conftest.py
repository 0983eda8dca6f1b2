"""A small world for the UI: two batches collected and decided, two model versions promoted
one after the other with their SHAP comparison, and the prediction API serving the latest."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from experiments import explain, promotions, registry
from experiments.report import SHAP_DIR
from tasador.core import db
from tasador.core.config import Settings, get_settings, settings_env
from tasador.loop import decide
from tests.experiments.conftest import load_batches
from tests.processes import stopping_embedded
from tests.serving.conftest import (  # noqa: F401  (fixtures shared with the serving tests)
    fail_fast_mlflow,
    lgbm_model,
    ready_version,
    register,
    running,
    wait_until,
    xgb_model,
)


@dataclass(frozen=True)
class World:
    settings: Settings
    api_url: str
    versions: tuple[str, str]
    batch_ids: list[int]


def log_shap(settings: Settings, version: str, new: Any, previous: Any, rows: pd.DataFrame) -> None:
    """The SHAP comparison as experiments.champion logs it on the version's run."""
    client = registry.connect(settings)
    run_id = client.get_model_version(settings.mlflow.model_name, version).run_id
    previous_version = None if previous is None else int(version) - 1
    before = None if previous is None else explain.Explained(previous, None)  # trees: no need
    change = explain.explain_change(
        explain.Explained(new, None), before, rows, previous_version, f"v{version}"
    )
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / SHAP_DIR
        out.mkdir()
        change.diff.to_csv(out / "importance.csv", index=False)
        (out / "importance.png").write_bytes(change.png)
        (out / "summary.txt").write_text(change.sentence + "\n")
        client.log_artifacts(run_id, str(out), SHAP_DIR)


@pytest.fixture(scope="session")
def world(
    make_migrated_database: Callable[[str], str],
    mlflow_server: str,
    raw_sample: pd.DataFrame,
    clean_sample: pd.DataFrame,
    xgb_model: Any,  # noqa: F811
    lgbm_model: Any,  # noqa: F811
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
    second = register(settings, lgbm_model, clean_sample, family="lightgbm", batch_ids=batch_ids)
    engine = db.engine("clean", settings.databases)
    for version, previous in ((first, None), (second, first)):
        promotions.record(
            engine,
            model_name=settings.mlflow.model_name,
            challenger_version=int(version),
            previous_version=None if previous is None else int(previous),
            promoted=True,
            challenger_rmsle=0.5 if previous is None else 0.45,
            previous_rmsle=None if previous is None else 0.5,
            margin=0.01,
            holdout_rows=1_000,
            study_name=f"{settings.mlflow.model_name}-batches-1-2",
            retrain_decision_id=None,
            summary=f"Version {version} promoted.",
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
        settings = world.settings.updated(serving_api_url=world.api_url, **changes)
        for key, value in settings_env(settings).items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()

    apply()
    yield apply
    get_settings.cache_clear()
