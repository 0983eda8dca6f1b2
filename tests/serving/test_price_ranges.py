"""Each price with its calibrated range: on /predict, on /model, and for a version without."""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from experiments.scoring.ranges import RangeTable
from serving import price_ranges
from serving.api import create_app
from tasador.core.cleaning import clean_frame
from tasador.core.config import Settings
from tests.helpers.listings import generate_listings
from tests.helpers.mlflow import register
from tests.helpers.serving import LISTING, in_memory, ranges_of, ready_version, running, wait_until

LAND = {"state": "Texas", "city": "Austin", "zip_code": "78701", "acre_lot": 3.0}


@pytest.fixture(scope="module")
def xgb_ranges(xgb_model, clean_sample: pd.DataFrame) -> RangeTable:
    """The session XGBoost model's ranges, measured on listings of another seed."""
    holdout, _ = clean_frame(generate_listings(1_500, seed=31))
    return ranges_of(xgb_model, clean_sample, holdout.reset_index(drop=True))


def _client(settings: Settings, model, table: RangeTable | None) -> TestClient:
    app = create_app(settings)
    served = in_memory(model, settings.mlflow.model_name, "3", table)
    app.state.service.watcher.current = served
    return TestClient(app)


def _post(client: TestClient, body: object) -> dict:
    response = client.post(
        "/predict", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_each_price_comes_inside_its_range_land_wider(
    serving_settings: Settings, xgb_model, xgb_ranges: RangeTable
) -> None:
    client = _client(serving_settings, xgb_model, xgb_ranges)
    body = [LISTING, LAND, {}, {**LISTING, "house_size": 4_000.0}]
    answer = _post(client, body)
    assert answer["coverage"] == 0.8
    triples = list(zip(answer["low"], answer["predictions"], answer["high"], strict=True))
    assert len(triples) == len(body)
    assert all(0 < low <= price <= high for low, price, high in triples), triples
    relative = [(high - low) / price for low, price, high in triples]
    assert relative[1] > relative[0]  # land is priced less surely than a house
    single = _post(client, LISTING)  # an object: the same range as in the list
    assert (single["low"][0], single["high"][0]) == (answer["low"][0], answer["high"][0])


def test_the_configured_coverage_picks_the_ranges(
    serving_settings: Settings, xgb_model, xgb_ranges: RangeTable
) -> None:
    narrow = _post(_client(serving_settings, xgb_model, xgb_ranges), LISTING)
    wide_settings = serving_settings.updated(serving_range_coverage=0.95)
    wide = _post(_client(wide_settings, xgb_model, xgb_ranges), LISTING)
    assert wide["coverage"] == 0.95 and wide["predictions"] == narrow["predictions"]
    assert wide["low"][0] < narrow["low"][0] and wide["high"][0] > narrow["high"][0]


def test_a_version_without_ranges_prices_with_null_ranges(
    serving_settings: Settings, xgb_model
) -> None:
    answer = _post(_client(serving_settings, xgb_model, None), [LISTING, LAND])
    assert len(answer["predictions"]) == 2
    assert answer["low"] is None and answer["high"] is None and answer["coverage"] is None


def test_model_states_the_coverage_measured_and_a_version_without_ranges_still_serves(
    serving_settings: Settings, xgb_model, clean_sample: pd.DataFrame, xgb_ranges: RangeTable
) -> None:
    with running(serving_settings) as (url, _):
        old = register(serving_settings, xgb_model, clean_sample, family="xgboost")
        wait_until(lambda: ready_version(url) == old, 60, "the version without ranges serves")
        answer = httpx.post(f"{url}/predict", content=json.dumps(LISTING)).json()
        assert answer["predictions"][0] > 0 and answer["low"] is None
        described = httpx.get(f"{url}/model").json()["price_range"]
        assert described["available"] is False and described["coverage"] == 0.8
        assert described["detail"] == price_ranges.NO_RANGES

        new = register(
            serving_settings, xgb_model, clean_sample, family="xgboost", price_ranges=xgb_ranges
        )
        wait_until(lambda: ready_version(url) == new, 60, "the version with ranges serves")
        answer = httpx.post(f"{url}/predict", content=json.dumps([LISTING, LAND])).json()
        assert all(
            low <= price <= high
            for low, price, high in zip(
                answer["low"], answer["predictions"], answer["high"], strict=True
            )
        )
        described = httpx.get(f"{url}/model").json()["price_range"]
        assert described["available"] is True
        assert described["measured"] == xgb_ranges.holdout["80"]
        assert set(described["measured"]) == {"overall", "houses", "land"}
        assert "80% ranges" in described["detail"] and "land" in described["detail"]
