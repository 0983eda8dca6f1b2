"""Serving workers: none takes a request before its first model load has finished or failed, and
a worker killed under load costs only the requests it had in flight.

The multi-worker tests run `tasador serve` as users do (serving.server, uvicorn's supervisor,
the session's MLflow server, the test's RAW PostgreSQL) and reach the workers through the one
socket they share, on fresh connections so the kernel hands each to whichever worker accepts.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

import httpx
import pandas as pd
import pytest

from tasador.core.config import Settings
from tasador.core.services import free_port
from tests.helpers.mlflow import register
from tests.helpers.serving import LISTING, Load, running, wait_until
from tests.helpers.serving_workers import ready, tasador_serve, versions, workers_serving

CLIENTS = 4  # concurrent clients of the kill test: at most this many requests are in flight


def test_once_one_worker_is_ready_every_worker_answers_with_the_model(
    serving_settings: Settings, lgbm_model: Any, clean_sample: pd.DataFrame
) -> None:
    version = register(serving_settings, lgbm_model, clean_sample, family="lightgbm")
    with tasador_serve(serving_settings, workers=2) as url:
        # From the server's start: a worker still loading does not answer at all (its
        # connections wait in the shared socket for a worker that has loaded), so every
        # answer, from either worker, is ready; and every /predict gets a price.
        seen: set[int] = set()
        priced = 0
        started = time.monotonic()
        while len(seen) < 2 or priced < 40:
            assert time.monotonic() - started < 240, f"workers answered: {seen}"
            body = ready(url)
            if body is None:  # not listening yet, or no worker has loaded
                time.sleep(0.05)
                continue
            assert body["ready"], body["detail"]
            seen.add(body["worker"]["pid"])
            response = httpx.post(
                f"{url}/predict", json=LISTING, headers={"Connection": "close"}, timeout=30
            )
            assert response.status_code == 200, response.text
            assert response.json()["model"]["version"] == version
            priced += 1


def test_a_killed_worker_costs_only_its_requests_in_flight(
    serving_settings: Settings, xgb_model: Any, clean_sample: pd.DataFrame
) -> None:
    version = register(serving_settings, xgb_model, clean_sample, family="xgboost")
    with tasador_serve(serving_settings, workers=2) as url:
        serving: dict[int, dict[str, Any]] = {}  # /ready of each worker, by pid

        def both_serve() -> bool:
            serving.update(workers_serving(url, 20))
            return len(serving) == 2 and versions(serving) == {version}

        wait_until(both_serve, 180, "both workers serve")
        workers = set(serving)
        killed, survivor = sorted(workers)  # either may be the one polling the registry
        new: dict[int, dict[str, Any]] = {}  # /ready of workers started since, by pid

        def replaced() -> bool:
            seen = workers_serving(url, 10)
            new.update((pid, body) for pid, body in seen.items() if pid not in workers)
            return bool(new)

        with Load(url, threads=CLIENTS, fresh=True) as load:
            wait_until(lambda: len(load.all()) >= 40, 60, "the clients are answered")
            os.kill(killed, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_until(replaced, 180, "a new worker replaces the killed one")
            replaced_at = time.monotonic()
            time.sleep(2)  # the clients reach the new worker too
        scrape = httpx.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10).text
        after = workers_serving(url, 20)

    answers = load.all()
    failed = [a for a in answers if a[1] == 0]  # no answer: the connection broke
    print(
        f"{len(failed)} of {len(answers)} requests failed; the new worker answered /ready "
        f"{replaced_at - killed_at:.1f}s after the kill"
    )
    assert len(failed) <= CLIENTS, f"{len(failed)} requests failed, more than were in flight"
    # Every answer is a price from the model: the new worker took none before it had loaded.
    assert {(status, served) for _, status, served in answers if status} == {(200, version)}
    assert any(killed_at < at < replaced_at and status == 200 for at, status, _ in answers)
    assert len(new) == 1
    ((replacement, body),) = new.items()
    assert body["ready"] and body["model"]["version"] == version
    assert set(after) <= {survivor, replacement} and killed not in after
    assert "tasador_worker_restarts_total 1.0" in scrape
    # The killed worker's per-worker gauges left the scrapes with it.
    assert f'pid="{killed}"' not in scrape
    assert f'tasador_model_version{{pid="{survivor}"}} {float(version)}' in scrape


@pytest.mark.server
def test_a_worker_waits_for_its_first_load_at_most_the_bound_then_says_why(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry that accepts connections and never answers: the first load outlasts the
    bound, and the worker then takes requests, answering 503 with the reason."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "6")  # the stuck poll ends after the test
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # the kernel completes connections; nobody ever speaks on them
        port = hung.getsockname()[1]
        settings = settings.updated(
            mlflow_tracking_uri=f"http://127.0.0.1:{port}", serving_first_load_s=1.0
        )
        started = time.monotonic()
        with running(settings) as (url, _):
            waited = time.monotonic() - started
            assert httpx.get(f"{url}/health").status_code == 200
            answer = httpx.get(f"{url}/ready")
    assert 1.0 <= waited < 6.0  # the bound, not the registry's timeout
    assert answer.status_code == 503
    assert answer.json()["detail"].startswith("no model loaded yet: looking up")


@pytest.mark.server
def test_a_worker_whose_first_load_fails_takes_requests_at_once_and_says_why(
    settings: Settings,
) -> None:
    settings = settings.updated(
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",  # nobody listens there
        serving_first_load_s=120.0,
    )
    started = time.monotonic()
    with running(settings) as (url, service):
        waited = time.monotonic() - started
        answer = httpx.post(f"{url}/predict", json=LISTING)
    assert waited < settings.serving.serving_first_load_s  # the failure ended the wait
    assert service.watcher.settled.is_set()
    assert answer.status_code == 503
    assert "model registry unreachable" in answer.json()["detail"]
