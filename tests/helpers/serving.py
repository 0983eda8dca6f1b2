"""Serving under test: the API on a real uvicorn server in a thread, models made ready without
the registry, a listing to price, load to send, and waiting for what the server does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn

from experiments import calibration
from experiments.scoring import artifact
from experiments.scoring.ranges import RangeTable
from serving.api import Service, create_app
from serving.fast_path import FastScorer
from serving.models import ModelInfo, ServedModel, prepare
from serving.schema import Listing
from tasador.core.columns import TARGET
from tasador.core.config import Settings

LISTING = {
    "brokered_by": 40618.0,
    "status": "for_sale",
    "bed": 3,
    "bath": 2,
    "acre_lot": 0.25,
    "street": 1758218.0,
    "city": "Austin",
    "state": "Texas",
    "zip_code": 78701.0,
    "house_size": 1800.0,
    "prev_sold_date": "2015-06-01",
}


@contextmanager
def serve_in_thread(app: Any, what: str) -> Iterator[str]:
    """``app`` served by a real uvicorn server on a free port in a thread; yields its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180  # the API's startup includes its first model load
    while not (server.started and server.servers):
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def running(settings: Settings) -> Iterator[tuple[str, Service]]:
    """The API served by a real uvicorn server in a thread; yields its URL and its state."""
    app = create_app(settings)
    with serve_in_thread(app, "the API") as url:
        yield url, app.state.service


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until ``check()`` holds; fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"not within {timeout_s:.0f}s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def ready_version(url: str) -> str | None:
    try:
        response = httpx.get(f"{url}/ready", timeout=5)
    except httpx.TransportError:
        return None
    model = response.json().get("model")
    return model["version"] if model else None


def artifact_of(
    model: Any, background: pd.DataFrame | None = None, price_ranges: RangeTable | None = None
) -> artifact.Artifact:
    """The scoring artifact registration would store for a fitted model (``background``: SHAP
    background rows, model input, for a linear model's explanations; ``price_ranges``: its
    calibrated ranges)."""
    return artifact.of_model(model, background, price_ranges)


def scorer_of(model: Any, price_ranges: RangeTable | None = None) -> tuple[FastScorer, str]:
    """Serving's scorer of a fitted model, from its artifact as a load prepares it (checked
    against the pipeline's prices), and what was checked."""
    return prepare("1", artifact_of(model, price_ranges=price_ranges), None)


def ranges_of(model: Any, train: pd.DataFrame, holdout: pd.DataFrame) -> RangeTable:
    """``model``'s price ranges as registration calibrates them (``model`` fitted on ``train``;
    three folds: tests keep it quick), measured on ``holdout``."""
    table = calibration.price_ranges(model, train, holdout, folds=3, seed=0)
    assert table is not None
    return table


def pipeline_prices(model: Any, listings: Sequence[Listing]) -> np.ndarray:
    """The fitted pipeline's own prices for validated listings (the reference serving meets)."""
    records = [listing.model_dump(exclude={"price"}) for listing in listings]
    return artifact.pipeline_prices(model, records)


def in_memory(
    model: Any,
    name: str = "realtor-test",
    version: str = "1",
    price_ranges: RangeTable | None = None,
) -> ServedModel:
    """A fitted model made ready to serve without the registry (for contract tests that are
    about the API, not about MLflow; the registry path has its own tests), from its scoring
    artifact (with ``price_ranges``, if given); or a scorer as it is
    (``tests.helpers.broken_models``)."""
    if hasattr(model, "artifact"):
        scorer, how = model, "a test scorer"
    else:
        scorer, how = scorer_of(model, price_ranges)
    info = ModelInfo(
        name=name,
        version=version,
        alias="production",
        run_id=None,
        family=None,
        registered_at=None,
        promoted_at=None,
        promotion=None,
        retrain_reason=None,
        study_name=None,
        batch_ids=[],
        batch_range=None,
        metrics={},
        loaded_at=datetime.now(UTC),
        scoring=how,
    )
    return ServedModel(info=info, scorer=scorer)


def listings_of(frame: pd.DataFrame) -> list[Listing]:
    """Rows as the API receives them (JSON-like values, blanks left out)."""
    rows = frame.drop(columns=[TARGET]).astype(object).where(frame.notna(), None)
    listings = []
    for row in rows.to_dict("records"):
        if row["prev_sold_date"] is not None:
            row["prev_sold_date"] = row["prev_sold_date"].date()
        for column in ("brokered_by", "street"):  # CLEAN keeps ids as digit strings
            if row[column] is not None:
                row[column] = int(row[column])
        listings.append(Listing.model_validate({k: v for k, v in row.items() if v is not None}))
    return listings


class Load:
    """Threads sending single-listing requests until stopped; every answer is kept. With
    ``fresh``, each request on a connection of its own (so the kernel may hand it to any
    worker), else each thread keeps one connection."""

    def __init__(self, url: str, threads: int = 4, fresh: bool = False) -> None:
        self.url = url
        self.headers = {"Connection": "close"} if fresh else {}
        self.answers: list[list[tuple[float, int, str | None]]] = [[] for _ in range(threads)]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, args=(i,), daemon=True) for i in range(threads)
        ]

    def _send(self, i: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30, headers=self.headers) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/predict", json={**LISTING, "bed": i % 6})
                except httpx.TransportError:
                    self.answers[i].append((time.monotonic(), 0, None))
                    continue
                version = response.json()["model"]["version"] if response.is_success else None
                self.answers[i].append((time.monotonic(), response.status_code, version))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def all(self) -> list[tuple[float, int, str | None]]:
        return [a for answers in self.answers for a in answers]
