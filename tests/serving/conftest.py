"""Fixtures of the serving tests (helpers they share are in ``tests.helpers.serving``)."""

from __future__ import annotations

import uuid

import pytest

from serving.schema import Listing
from tasador.core.cleaning import clean_frame
from tasador.core.config import Settings
from tests.helpers.listings import generate_listings
from tests.helpers.serving import listings_of


@pytest.fixture(autouse=True)
def _serving_fails_fast(fail_fast_mlflow: None) -> None:
    """Every serving test polls the registry as `tasador serve` does."""


@pytest.fixture
def serving_settings(settings: Settings, mlflow_server: str) -> Settings:
    """Fresh RAW database and state, the session MLflow server, a private model name."""
    tag = uuid.uuid4().hex[:8]
    return settings.updated(
        mlflow_tracking_uri=mlflow_server,
        experiment_name=f"serving-{tag}",
        model_name=f"serving-test-{tag}",
        serving_poll_s=0.5,
        serving_log_flush_s=0.2,
        serving_max_rows=2_000,
    )


@pytest.fixture(scope="module")
def unseen_listings() -> list[Listing]:
    """A few hundred generated listings the models were not trained on (another seed)."""
    frame, _ = clean_frame(generate_listings(400, seed=77))
    return listings_of(frame.reset_index(drop=True))
