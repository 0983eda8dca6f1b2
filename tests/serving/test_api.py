"""The API's contract against a real MLflow server and a real RAW database."""

from __future__ import annotations

import math

import httpx
import hypothesis
import pandas as pd
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from serving.api import create_app
from tasador.core.config import Settings
from tests.helpers.mlflow import register
from tests.helpers.serving import LISTING, in_memory, ready_version, running, wait_until


def test_before_any_model_503_then_predicts_once_promoted(
    serving_settings: Settings, xgb_model, clean_sample: pd.DataFrame
) -> None:
    with running(serving_settings) as (url, _):
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        wait_until(
            lambda: httpx.get(f"{url}/ready").json()["registry"]["reachable"] is True,
            60,
            "the registry answers",
        )
        refused = httpx.post(f"{url}/predict", json=LISTING)
        assert refused.status_code == 503
        assert "no model promoted yet" in refused.json()["detail"]
        assert httpx.get(f"{url}/ready").status_code == 503

        version = register(serving_settings, xgb_model, clean_sample, family="xgboost")
        wait_until(lambda: ready_version(url) == version, 60, "the new model serves")
        answer = httpx.post(f"{url}/predict", json=LISTING)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == {
            "name": serving_settings.mlflow.model_name,
            "version": version,
            "alias": "production",
        }
        assert len(body["predictions"]) == 1 and 10_000 < body["predictions"][0] < 10_000_000


@pytest.fixture
def client(serving_settings: Settings, xgb_model) -> TestClient:
    """The app with a model in place and no background threads (lifespan not run)."""
    app = create_app(serving_settings)
    app.state.service.watcher.current = in_memory(
        xgb_model, serving_settings.mlflow.model_name, "7"
    )
    return TestClient(app)


def test_a_list_is_priced_in_order_like_single_listings(client: TestClient) -> None:
    others = [{"state": "Ohio", "house_size": 900}, {}, {**LISTING, "bed": 5}]
    singles = [client.post("/predict", json=x).json()["predictions"][0] for x in others]
    together = client.post("/predict", json=others).json()
    assert together["predictions"] == singles
    assert together["model"]["version"] == "7"
    assert singles[0] != singles[2]


def test_422_names_each_bad_field_with_its_row(client: TestClient) -> None:
    response = client.post("/predict", json=[LISTING, {"bed": -1, "colour": "red"}, {"zip": 1}])
    assert response.status_code == 422
    locs = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert locs == {("body", 1, "bed"), ("body", 1, "colour"), ("body", 2, "zip")}


@pytest.mark.parametrize("body", [b"", b"not json", b"42", b'"a listing"', b"{", b"null"])
def test_bodies_that_are_no_listing_get_422(client: TestClient, body: bytes) -> None:
    response = client.post("/predict", content=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_too_many_listings_are_refused(client: TestClient, serving_settings: Settings) -> None:
    n = serving_settings.serving.serving_max_rows
    assert client.post("/predict", json=[{}] * n).status_code == 200
    over = client.post("/predict", json=[{}] * (n + 1))
    assert over.status_code == 422 and "at most" in over.json()["detail"][0]["msg"]
    huge = client.post("/predict", content=b"[" + b" " * (n * 5_000) + b"]")
    assert huge.status_code == 413


def test_model_and_metrics_describe_what_serves(client: TestClient) -> None:
    client.post("/predict", json=LISTING)
    client.post("/predict", json={"bed": -3})
    info = client.get("/model").json()
    assert info["version"] == "7" and info["scoring"].startswith("scoring artifact")
    text = client.get("/metrics").text
    assert 'tasador_requests_total{endpoint="predict",status="200"} 1.0' in text
    assert 'tasador_requests_total{endpoint="predict",status="422"} 1.0' in text
    assert "tasador_model_version 7.0" in text
    assert "tasador_request_latency_seconds_bucket" in text


@pytest.mark.parametrize(("path", "examples"), [("/predict", 1_000), ("/explain", 200)])
def test_generated_requests_never_cause_a_server_error(
    client: TestClient, path: str, examples: int
) -> None:
    """Schemathesis draws requests from the OpenAPI document, valid and invalid alike."""
    operation = schemathesis.openapi.from_asgi("/openapi.json", client.app)[path]["POST"]
    statuses: list[int] = []

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(
        case=operation.as_strategy(GenerationMode.POSITIVE)
        | operation.as_strategy(GenerationMode.NEGATIVE)
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call()
        statuses.append(response.status_code)
        # Every check but "schema-valid data is accepted": JSON Schema cannot say "no date in
        # the future" or "not only blanks", which the API refuses with a 422 on purpose.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    run()
    assert len(statuses) >= examples
    assert all(s < 500 for s in statuses)
    assert {200, 422} <= set(statuses)


def test_explain_adds_up_to_the_price_it_serves(client: TestClient) -> None:
    price = client.post("/predict", json=LISTING).json()["predictions"][0]
    answer = client.post("/explain", json=LISTING)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["prediction"] == price and body["model"]["version"] == "7"
    contributions = body["contributions"]
    log_price = body["base_value"] + sum(c["contribution"] for c in contributions)
    assert math.exp(log_price) == pytest.approx(price, rel=1e-3)
    by_feature = {c["feature"]: c for c in contributions}
    assert {"house_size", "state", "city", "zip_code", "bed"} <= set(by_feature)
    assert by_feature["state"]["value"] == "Texas" and by_feature["house_size"]["value"] == 1800
    sizes = [abs(c["contribution"]) for c in contributions]
    assert sizes == sorted(sizes, reverse=True)


def test_explain_takes_one_listing(client: TestClient) -> None:
    assert client.post("/explain", json=[LISTING]).status_code == 422
    bad = client.post("/explain", json={"house_size": 5})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "house_size"]


def test_a_price_in_the_body_is_refused_with_the_reason(client: TestClient) -> None:
    for path in ("/predict", "/explain"):
        refused = client.post(path, json={**LISTING, "price": 350_000})
        assert refused.status_code == 422, refused.text
        (error,) = refused.json()["detail"]
        assert error["loc"] == ["body", "price"]
        assert "price is what the model predicts" in error["msg"]
    many = client.post("/predict", json=[LISTING, {**LISTING, "price": 1.0}])
    assert many.status_code == 422 and many.json()["detail"][0]["loc"] == ["body", 1, "price"]
