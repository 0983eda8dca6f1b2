"""A family added to the registry runs the whole loop: CatBoost searched through the real study,
refit and registered, then served by serving's fast path (its trees walked, no CatBoost in
serving) at the pipeline's prices, and explained with contributions that add up.

Real PostgreSQL (Optuna, RAW, CLEAN), real MLflow with S3, real API on uvicorn in a thread.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pandas as pd

from experiments import champion, registry, search_worker
from serving.schema import Listing
from tasador.core.config import Settings
from tasador.loop import training
from tests.helpers.search import load_batches, write_spaces
from tests.helpers.serving import LISTING, pipeline_prices, ready_version, running, wait_until

# Tiny budgets: the test is about the loop and serving, not about the fit.
CATBOOST = """\
family: catboost
params:
  iterations: {type: int, low: 20, high: 40}
  depth: {type: int, low: 3, high: 5}
  one_hot_max_size: {type: categorical, choices: [2, 4]}
"""


def test_a_searched_catboost_version_is_served_by_the_fast_path_and_explained(
    search_settings: Settings, raw_sample: pd.DataFrame, tmp_path: Path
) -> None:
    settings = search_settings.updated(
        search_spaces_dir=write_spaces(tmp_path / "catboost-only", {"catboost": CATBOOST}),
        search_trials=2,
        serving_poll_s=0.5,
        serving_log_flush_s=0.2,
    )
    ids = load_batches(settings, raw_sample.iloc[:1200], [600, 600])
    plan = training.plan_retraining(settings, None, batch_ids=ids, reason="baseline")
    search_worker.run_worker(plan.study_name, settings)
    result = champion.finish_study(plan.study_name, settings)
    assert result.promoted  # the first model serves

    client = registry.connect(settings)
    version = client.get_model_version_by_alias(settings.mlflow.model_name, "production")
    assert version.tags[registry.SCORING_TAG] == "stored"
    model = registry.load_version(settings.mlflow, version.version)
    listing = Listing.model_validate_json(json.dumps(LISTING))
    expected = pipeline_prices(model, [listing])[0]

    with running(settings) as (url, _):
        wait_until(lambda: ready_version(url) == version.version, 120, "the version serves")
        described = httpx.get(f"{url}/model").json()
        price = httpx.post(f"{url}/predict", json=LISTING).json()["predictions"][0]
        wait_until(
            lambda: httpx.post(f"{url}/explain", json=LISTING).status_code == 200,
            120,
            "the explainer is built",
        )
        explained = httpx.post(f"{url}/explain", json=LISTING).json()

    assert described["family"] == "catboost"
    assert described["scoring"].startswith("scoring artifact (catboost; the registered prices")
    assert "trees walked" in described["scoring"]
    assert math.isclose(price, expected, rel_tol=1e-6)
    contributions = {c["feature"]: c["contribution"] for c in explained["contributions"]}
    total = explained["base_value"] + sum(contributions.values())
    assert math.isclose(total, math.log(expected), abs_tol=1e-6)
    assert sum(abs(v) > 1e-3 for v in contributions.values()) >= 3  # not one field, not none
    assert abs(explained["base_value"] - math.log(expected)) > 1e-3  # not the row itself
