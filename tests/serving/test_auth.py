"""The optional API key: with it set, only callers that send it get prices; probes stay open."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app import serving_client
from serving.api import create_app
from tasador.core.config import Settings
from tests.helpers.serving import LISTING, in_memory, running

KEY = "s3cr3t-" + "ab" * 20


@pytest.fixture
def keyed(serving_settings: Settings) -> Settings:
    return serving_settings.updated(serving_api_key=SecretStr(KEY))


def test_the_key_is_off_by_default() -> None:
    assert Settings(_env_file=None).serving.serving_api_key is None


def test_the_key_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASADOR_SERVING_API_KEY", KEY)
    key = Settings(_env_file=None).serving.serving_api_key
    assert key is not None and key.get_secret_value() == KEY
    assert KEY not in repr(Settings(_env_file=None))


def test_open_without_a_key(serving_settings: Settings, xgb_model: Any) -> None:
    app = create_app(serving_settings)
    app.state.service.watcher.current = in_memory(
        xgb_model, serving_settings.mlflow.model_name, "2"
    )
    client = TestClient(app)
    assert client.post("/predict", json=LISTING).status_code == 200
    assert client.get("/model").status_code == 200


def test_with_a_key_set_only_callers_sending_it_get_answers(
    keyed: Settings, xgb_model: Any
) -> None:
    app = create_app(keyed)
    app.state.service.watcher.current = in_memory(xgb_model, keyed.mlflow.model_name, "2")
    client = TestClient(app)
    wrong = [{}, {"X-API-Key": "nope"}, {"Authorization": f"Basic {KEY}"}, {"X-API-Key": KEY[:-1]}]
    for headers in wrong:
        for method, path, body in [
            ("POST", "/predict", LISTING),
            ("POST", "/explain", LISTING),
            ("GET", "/model", None),
        ]:
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "predictions" not in response.text
    for headers in [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}]:
        assert client.post("/predict", json=LISTING, headers=headers).status_code == 200
        assert client.post("/explain", json=LISTING, headers=headers).status_code == 200
        assert client.get("/model", headers=headers).json()["version"] == "2"
    for path in ["/health", "/ready", "/metrics"]:  # probes and scrapes need no key
        assert client.get(path).status_code == 200, path
    metrics = client.get("/metrics").text
    assert 'tasador_requests_total{endpoint="predict",status="401"} 4.0' in metrics


def test_the_ui_client_sends_the_key(keyed: Settings, xgb_model: Any) -> None:
    """Over real HTTP, as the UI calls serving: with the setting's key it prices; without, the
    UI shows a sentence about the key."""
    with running(keyed) as (url, service):
        service.watcher.current = in_memory(xgb_model, keyed.mlflow.model_name, "5")
        key = serving_client.api_key_of(keyed.serving.serving_api_key)
        assert key == KEY
        price = serving_client.predict(url, LISTING, key)["predictions"][0]
        assert price > 0
        assert serving_client.explain(url, LISTING, key)["prediction"] == price
        assert serving_client.model(url, key)["version"] == "5"
        with pytest.raises(serving_client.ServiceError, match="TASADOR_SERVING_API_KEY"):
            serving_client.predict(url, LISTING, serving_client.api_key_of(None))
        assert httpx.get(f"{url}/ready").status_code == 200
