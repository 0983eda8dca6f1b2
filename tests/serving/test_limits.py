"""Serving stays bounded and never serves a wrong answer: huge bodies, NaN models, SHAP load.

The memory test runs the API as a real uvicorn process (its RSS is then its own) and streams a
64 MB chunked body to it with a real HTTP client.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.explanations import Explainers
from tasador.core import db, services, tables
from tasador.core.config import Settings, settings_env
from tasador.core.services import free_port
from tests.helpers.broken_models import NaNScorer
from tests.helpers.serving import LISTING, in_memory, running, wait_until

MB = 1024**2


@contextmanager
def api_process(settings: Settings, log_path: Path) -> Iterator[tuple[str, psutil.Process]]:
    """The API as its own uvicorn process (stopped by this context, pass or fail)."""
    port = free_port()
    env = {**os.environ, **settings_env(settings), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    args = [sys.executable, "-m", "uvicorn", "--factory", "serving.api:app_from_environment"]
    args += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with services.running(args, f"{url}/health", log_path, timeout_s=120, env=env) as process:
        yield url, psutil.Process(process.pid)


def logged_rows(settings: Settings) -> list[sa.Row]:
    with db.engine("raw", settings.databases).connect() as conn:
        table = tables.raw.inference_requests
        return list(conn.execute(sa.select(table).order_by(table.c.requested_at)))


@pytest.mark.server
def test_a_64_mb_chunked_post_gets_413_and_barely_grows_memory(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.updated(mlflow_tracking_uri="http://127.0.0.1:9", serving_log_flush_s=0.2)
    assert settings.serving.serving_max_body_bytes == 8 * MB  # the default is what is measured
    chunk = b"[" + b" " * (MB - 1)
    with api_process(settings, tmp_path / "api.log") as (url, server):
        for _ in range(3):  # warm: first requests allocate what every request reuses
            httpx.post(f"{url}/predict", json=LISTING, timeout=30)
        time.sleep(0.5)
        before = server.memory_info().rss
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, server.memory_info().rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        sent = 0

        def body() -> Iterator[bytes]:
            nonlocal sent
            for _ in range(64):
                sent += len(chunk)
                yield chunk

        try:
            response = httpx.post(f"{url}/predict", content=body(), timeout=120)
        finally:
            done.set()
            sampler.join()
        growth = (peak - before) / MB
        print(f"64 MB chunked POST: server RSS grew {growth:.1f} MB at peak")
        assert response.status_code == 413, response.text
        assert sent == 64 * MB  # chunked: no Content-Length told the server in advance
        assert growth < 16
        # The server still answers, on a fresh connection.
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        wait_until(lambda: any(r.status_code == 413 for r in logged_rows(settings)), 30, "logged")
    (refused,) = [r for r in logged_rows(settings) if r.status_code == 413]
    assert len(refused.inputs["body"]) <= 2_000  # a prefix, not 8 MB


@pytest.mark.server
def test_the_413_comes_before_the_body_ends(settings: Settings) -> None:
    """A raw HTTP/1.1 client: the answer arrives while most of the body is still unsent."""
    settings = settings.updated(mlflow_tracking_uri="http://127.0.0.1:9", serving_max_body_bytes=MB)
    with running(settings) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            piece = b" " * 65_536
            frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            sent, answer = 0, b""
            conn.setblocking(False)
            while sent < 64 * MB and not answer:
                try:
                    conn.sendall(frame)
                    sent += len(piece)
                except BlockingIOError:
                    time.sleep(0.001)
                with suppress(BlockingIOError):
                    answer = conn.recv(65_536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        # Past the 1 MiB limit by no more than the loopback's socket buffers (a few MB): the
        # answer came long before the 64 MB end.
        assert sent < 16 * MB


def test_a_declared_length_over_the_limit_is_refused_unread(client: TestClient) -> None:
    response = client.post(
        "/predict", content=b"{}", headers={"content-length": str(64 * MB), "x": "y"}
    )
    assert response.status_code == 413


@pytest.fixture
def client(serving_settings: Settings, xgb_model: Any) -> TestClient:
    app = create_app(serving_settings)
    app.state.service.watcher.current = in_memory(
        xgb_model, serving_settings.mlflow.model_name, "7"
    )
    return TestClient(app)


def test_a_model_predicting_nan_is_never_served(serving_settings: Settings) -> None:
    # Broken on this one listing only, so it would pass the swap's validation (which refuses a
    # model that is NaN everywhere: tests/serving/test_validation.py) and fails live.
    marker = {"brokered_by": LISTING["brokered_by"], "street": LISTING["street"]}
    scorer = NaNScorer(inf_rows=(1,), only_for=marker)
    with running(serving_settings) as (url, service):
        version = "6"
        service.watcher.current = in_memory(scorer, serving_settings.mlflow.model_name, version)
        one = httpx.post(f"{url}/predict", json=LISTING)
        assert one.status_code == 503
        assert f"version {version} predicted no finite price" in one.json()["detail"]
        many = httpx.post(f"{url}/predict", json=[LISTING, {**LISTING, "bed": 2}])
        assert many.status_code == 503 and "listing 0, 1" in many.json()["detail"]
        explained = httpx.post(f"{url}/explain", json=LISTING)
        assert explained.status_code == 503
        assert "no finite price" in explained.json()["detail"]
        metrics = httpx.get(f"{url}/metrics").text
        assert "tasador_non_finite_predictions_total 4.0" in metrics
        wait_until(lambda: len(logged_rows(serving_settings)) == 4, 30, "four rows logged")
    rows = logged_rows(serving_settings)
    assert {r.status_code for r in rows} == {503}
    assert all(r.prediction is None and r.model_version == version for r in rows)
    assert sorted(r.endpoint for r in rows) == ["explain", "predict", "predict", "predict"]


def test_the_explainer_is_built_once_per_version(client: TestClient) -> None:
    service = client.app.state.service
    for _ in range(3):
        assert client.post("/explain", json=LISTING).status_code == 200
    assert service.explainers.builds == 1


@pytest.mark.server
def test_explanations_over_the_cap_get_429_and_predict_still_answers(
    serving_settings: Settings, xgb_model: Any
) -> None:
    settings = serving_settings.updated(serving_max_explains=1)
    with running(settings) as (url, service):
        service.watcher.current = in_memory(xgb_model, settings.mlflow.model_name, "3")
        # Slow explanations, so several overlap: each holds its slot for 1.5 s.
        explainers = service.explainers
        real_of = Explainers.of

        def slow_of(served: Any) -> Any:
            explain = real_of(explainers, served)

            def slowly(frame: Any) -> Any:
                time.sleep(1.5)
                return explain(frame)

            return slowly

        explainers.of = slow_of  # type: ignore[method-assign]
        with httpx.Client(timeout=30) as http, ThreadPoolExecutor(6) as pool:
            explains = [pool.submit(http.post, f"{url}/explain", json=LISTING) for _ in range(6)]
            time.sleep(0.3)
            started = time.monotonic()
            predicted = http.post(f"{url}/predict", json=LISTING)
            predict_s = time.monotonic() - started
            answers = [f.result() for f in explains]
        assert predicted.status_code == 200 and predict_s < 1.0
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 429, 429, 429, 429, 429], statuses
        busy = [a for a in answers if a.status_code == 429]
        assert all(a.headers["retry-after"] == "1" for a in busy)
        metrics = httpx.get(f"{url}/metrics").text
        assert 'tasador_requests_total{endpoint="explain",status="429"} 5.0' in metrics
