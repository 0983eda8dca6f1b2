"""Serving loads a version from its scoring artifact only: a pickle in the registry never runs
in serving, and a version without an artifact is refused, saying so.

Real MLflow (the session's server and S3), real API (uvicorn in a thread). The test process
allows MLflow to unpickle (``tasador.core.process``, as training does): had serving loaded the
pickle, the trap would have fired.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from experiments import registry
from experiments.scoring import artifact
from experiments.scoring.encoding import Unsupported
from serving import models
from serving.schema import Listing
from serving.validation import Refused
from tasador.core.config import Settings
from tests.helpers.broken_models import NaNRegressor, PickleTrap
from tests.helpers.mlflow import register
from tests.helpers.models import fit
from tests.helpers.serving import LISTING, pipeline_prices, ready_version, running, wait_until


def test_a_pickle_in_the_registry_never_runs_in_serving(
    serving_settings: Settings, clean_sample: pd.DataFrame, tmp_path: Path
) -> None:
    trap = tmp_path / "pickle-ran"
    model = fit("ridge", clean_sample.head(1_000), alpha=1.0)
    model.trap_ = PickleTrap(trap)  # pickled with the model: unpickling it creates ``trap``
    version = register(serving_settings, model, clean_sample, family="ridge")
    trap.unlink(missing_ok=True)  # MLflow may load what it logs, to check its input example

    with running(serving_settings) as (url, _):
        wait_until(lambda: ready_version(url) == version, 60, "the version serves")
        scoring = httpx.get(f"{url}/model").json()["scoring"]
        price = httpx.post(f"{url}/predict", json=LISTING).json()["predictions"][0]
        explained = httpx.post(f"{url}/explain", json=LISTING)
    assert not trap.exists()  # served, explained, and the pickle never loaded
    assert scoring.startswith("scoring artifact (ridge; the registered prices on 256 probe")
    expected = pipeline_prices(model, [Listing.model_validate_json(json.dumps(LISTING))])[0]
    assert price == round(expected, 2)
    assert explained.status_code == 200 and explained.json()["prediction"] == price

    # The trap is live: loading the version as MLflow's tools do springs it.
    registry.load_version(serving_settings.mlflow, version)
    assert trap.exists()


def test_a_version_without_a_scoring_artifact_is_refused_saying_so(
    serving_settings: Settings, clean_sample: pd.DataFrame
) -> None:
    model: Any = NaNRegressor().fit(None, None)  # not one of our pipelines: no artifact
    version = register(serving_settings, model, clean_sample, family="broken")
    client = registry.connect(serving_settings)
    tags = client.get_model_version(serving_settings.mlflow.model_name, version).tags
    assert tags[registry.SCORING_TAG].startswith("none: model NaNRegressor")

    with running(serving_settings) as (url, _):
        wait_until(lambda: httpx.get(f"{url}/ready").json()["refused"] is not None, 60, "a refusal")
        refused = httpx.get(f"{url}/ready").json()["refused"]
        answer = httpx.post(f"{url}/predict", json=LISTING)
    assert refused["version"] == version and refused["code"] == "no_artifact"
    assert f"version {version} refused: no scoring artifact stored with it" in refused["reason"]
    assert "never the pickled model" in refused["reason"]
    assert answer.status_code == 503 and "no scoring artifact" in answer.json()["detail"]


def test_a_version_from_before_scoring_artifacts_serves_once_given_one(
    serving_settings: Settings, clean_sample: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tasador scoring-artifacts` (registry.store_scoring) makes one from the pickled model, in
    a process that trusts the registry; serving then loads it."""

    def old(*_: Any, **__: Any) -> None:
        raise Unsupported("a version registered before scoring artifacts")

    with monkeypatch.context() as patch:
        patch.setattr(artifact, "write", old)
        version = register(
            serving_settings,
            fit("lightgbm", clean_sample.head(1_000)),
            clean_sample,
            family="lightgbm",
        )
    client = registry.connect(serving_settings)
    found = client.get_model_version(serving_settings.mlflow.model_name, version)
    with pytest.raises(Refused) as refused:
        models.load(client, serving_settings, found)
    assert refused.value.verdict.code == "no_artifact"
    assert "registered before scoring artifacts" in str(refused.value)

    assert registry.store_scoring(client, serving_settings.mlflow, found) == "stored"
    found = client.get_model_version(serving_settings.mlflow.model_name, version)
    assert found.tags[registry.SCORING_TAG] == "stored"
    served = models.load(client, serving_settings, found)
    assert served.info.scoring.startswith("scoring artifact (lightgbm;")


def test_a_catboost_artifact_whose_trees_were_altered_is_refused(
    clean_sample: pd.DataFrame, tmp_path: Path
) -> None:
    """Fault injection: leaf values edited in the stored arrays (as a writer of the artifact
    store could): serving has no CatBoost to fall back on, and the registered prices catch it."""
    folder = tmp_path / "scoring"
    model = fit("catboost", clean_sample.head(1_000), iterations=30, depth=4)
    artifact.write(model, folder)
    path = folder / artifact.ARRAYS_FILE
    with np.load(path, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    assert models.prepare("1", artifact.read(folder), None)[1].count("trees walked") == 1
    arrays["oblivious.leaf_values"] = arrays["oblivious.leaf_values"] * 1.01
    np.savez(path, allow_pickle=False, **arrays)
    with pytest.raises(Refused) as refused:
        models.prepare("1", artifact.read(folder), None)
    assert refused.value.verdict.code == "artifact_mismatch"
