"""Validated swap: a version the alias names answers nothing before it passes its checks.

Real MLflow, real versions: a sound one, one that prices infinity (a ridge of absurd
coefficients), one far off its registered holdout RMSLE, one stored without a validation sample.
Serving keeps the sound one and says why.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pandas as pd

from experiments import registry
from serving.validation import sample_listings, validate
from tasador.core.columns import TARGET
from tasador.core.config import Settings
from tasador.core.metrics import rmsle
from tests.helpers.mlflow import register
from tests.helpers.models import fit
from tests.helpers.serving import LISTING, pipeline_prices, ready_version, running, wait_until


def sample_rmsle(model: Any, rows: pd.DataFrame) -> float:
    """The model's RMSLE on ``rows`` as serving scores them."""
    listings, prices = sample_listings(registry.validation_sample(rows))
    return rmsle(prices, pipeline_prices(model, listings))


def refused(url: str) -> dict[str, Any] | None:
    return httpx.get(f"{url}/ready").json()["refused"]


def test_broken_versions_are_refused_and_the_old_one_keeps_serving(
    serving_settings: Settings, xgb_model: Any, lgbm_model: Any, clean_sample: pd.DataFrame
) -> None:
    holdout = clean_sample.tail(registry.VALIDATION_ROWS)
    figure = sample_rmsle(xgb_model, holdout)
    good = register(
        serving_settings,
        xgb_model,
        clean_sample,
        family="xgboost",
        validation=holdout,
        holdout_rmsle=figure * 1.1,  # the whole holdout's figure differs a little: passes
    )
    with running(serving_settings) as (url, service):
        wait_until(lambda: ready_version(url) == good, 60, "the sound version serves")
        model = httpx.get(f"{url}/model").json()
        assert "matching its registered holdout RMSLE" in model["validation"]
        answer = httpx.post(f"{url}/predict", json=LISTING).json()

        nan_model = fit("ridge", clean_sample.head(1_000), alpha=1.0)
        nan_model.regressor_[-1].coef_[:] = 0.0  # as a model trained on broken data may:
        nan_model.regressor_[-1].intercept_ = 1e6  # a log price whose price overflows
        broken = register(
            serving_settings, nan_model, clean_sample, family="ridge", validation=holdout
        )
        wait_until(lambda: (refused(url) or {}).get("version") == broken, 30, "NaN refused")
        ready = httpx.get(f"{url}/ready").json()
        assert ready["model"]["version"] == good and ready["registry"]["alias_version"] == broken
        assert ready["refused"]["code"] == "non_finite"
        assert f"version {broken} refused" in ready["refused"]["reason"]
        assert "NaN or infinite" in ready["refused"]["reason"]
        assert httpx.post(f"{url}/predict", json=LISTING).json() == answer
        model = httpx.get(f"{url}/model").json()
        assert model["version"] == good and f"version {broken} refused" in model["refused"]
        metrics = httpx.get(f"{url}/metrics").text
        assert f'tasador_model_refused{{reason="non_finite",version="{broken}"}} 1.0' in metrics

        # A model whose prices are far off the figure it was registered with.
        off = register(
            serving_settings,
            xgb_model,
            clean_sample,
            family="xgboost",
            validation=holdout,
            holdout_rmsle=figure / 3,
        )
        wait_until(lambda: (refused(url) or {}).get("version") == off, 30, "far-off refused")
        reason = refused(url)
        assert reason is not None and reason["code"] == "rmsle_off"
        assert f"registered holdout RMSLE {figure / 3:.4f}" in reason["reason"]
        assert ready_version(url) == good
        polls = service.watcher.status.polls
        wait_until(lambda: service.watcher.status.polls > polls + 3, 30, "more polls")
        assert service.watcher.status.refusals == 2  # a refused version is not loaded again
        metrics = httpx.get(f"{url}/metrics").text
        assert "tasador_model_refusals_total 2.0" in metrics

        # No sample stored: checked on probe listings only, and /model says so.
        plain = register(serving_settings, lgbm_model, clean_sample, family="lightgbm")
        wait_until(lambda: ready_version(url) == plain, 60, "the version without sample serves")
        assert refused(url) is None
        model = httpx.get(f"{url}/model").json()
        assert "no validation sample stored" in model["validation"]
        assert model["refused"] is None


def test_validation_refuses_what_cannot_serve(clean_sample: pd.DataFrame, xgb_model: Any) -> None:
    sample = registry.validation_sample(clean_sample.head(50))
    listings, prices = sample_listings(sample)
    assert len(listings) == 50 and np.allclose(prices, clean_sample[TARGET].head(50))

    def predict(listings: Any) -> np.ndarray:
        return pipeline_prices(xgb_model, listings)

    passed = validate(predict, sample, sample_rmsle(xgb_model, clean_sample.head(50)), 0.01)
    assert passed.passed and passed.code == "passed"
    assert not validate(lambda rows: -predict(rows), sample, None, 0.35).passed
    negative = validate(lambda rows: -predict(rows), None, None, 0.35, listings)
    assert negative.code == "non_positive" and "probe listings" in negative.detail
    assert validate(predict, None, None, 0.35, listings).code == "no_sample"
    unchecked = validate(predict, sample, None, 0.35)
    assert unchecked.passed and "no registered holdout RMSLE" in unchecked.detail
