"""The fast path gives the pipeline's very prices for every family, and steps aside when not."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.features import ListingFrame
from serving.fast_path import FastScorer, compile_fast_path, pipeline_prices
from serving.schema import Listing
from tasador.core.columns import STATUSES, TARGET
from tests.helpers.mlflow import register
from tests.helpers.models import FAMILY_NAMES, fit, small_model
from tests.helpers.serving import ready_version, running, wait_until


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family_model(request: pytest.FixtureRequest, clean_sample: pd.DataFrame) -> Any:
    return small_model(request.param, clean_sample)


def test_every_family_is_compiled_and_matches_the_pipeline(
    family_model: Any, unseen_listings: list[Listing]
) -> None:
    scorer, how = compile_fast_path(family_model)
    assert isinstance(scorer, FastScorer), how
    assert how.startswith("fast path")
    fast, slow = scorer.predict(unseen_listings), pipeline_prices(family_model, unseen_listings)
    np.testing.assert_allclose(fast, slow, rtol=1e-9)
    assert len(fast) >= 300 and fast.std() > 0  # real, varied prices


def test_one_row_at_a_time_gives_the_same_prices(
    family_model: Any, unseen_listings: list[Listing]
) -> None:
    scorer = FastScorer(family_model)
    listings = unseen_listings[:20]
    one_by_one = np.concatenate([scorer.predict([listing]) for listing in listings])
    np.testing.assert_allclose(one_by_one, scorer.predict(listings), rtol=1e-12)


words = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=12)
generated = st.builds(
    Listing,
    brokered_by=st.none() | st.integers(0, 10**6),
    status=st.none() | st.sampled_from(STATUSES),
    bed=st.none() | st.integers(0, 50),
    bath=st.none() | st.integers(0, 50),
    acre_lot=st.none() | st.floats(0, 100_000),
    city=st.none() | words.filter(lambda s: s.strip()) | st.sampled_from(["Austin", "Miami"]),
    state=st.none() | st.sampled_from(["Texas", "Florida", "California", "Atlantis"]),
    zip_code=st.none() | st.from_regex(r"^[0-9]{5}$", fullmatch=True),
    house_size=st.none() | st.floats(100, 100_000),
    prev_sold_date=st.none() | st.dates(date(1900, 1, 1), date.today()),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(generated, min_size=1, max_size=30))
def test_fast_path_matches_on_odd_listings(family_model: Any, batch: list[Listing]) -> None:
    np.testing.assert_allclose(
        FastScorer(family_model).predict(batch), pipeline_prices(family_model, batch), rtol=1e-9
    )


def test_a_pipeline_the_mirror_does_not_know_is_served_by_the_pipeline(
    monkeypatch: pytest.MonkeyPatch, clean_sample: pd.DataFrame
) -> None:
    """Fault injection: ``ListingFrame`` derives a column differently than the fast path's
    mirror (as a change to experiments/features.py would); the check at load time catches it."""
    model = fit("ridge", clean_sample.head(1_000), alpha=1.0)
    transform = ListingFrame.transform

    def changed(self: ListingFrame, frame: pd.DataFrame) -> pd.DataFrame:
        out = transform(self, frame)
        out["house_size"] = out["house_size"] * 1.1
        return out

    monkeypatch.setattr(ListingFrame, "transform", changed)
    scorer, how = compile_fast_path(model)
    assert scorer is None
    assert how.startswith("pipeline: the fast path disagreed on a probe listing"), how


def test_an_unknown_estimator_is_named_not_mirrored(clean_sample: pd.DataFrame) -> None:
    from sklearn.linear_model import Lasso

    from experiments.features import log_price_model

    frame = clean_sample.head(500)
    model = log_price_model(Lasso(alpha=0.1), "linear")
    model.fit(frame.drop(columns=[TARGET]), frame[TARGET].to_numpy())
    scorer, how = compile_fast_path(model)
    assert scorer is None
    assert "Lasso" in how and "not mirrored" in how


def test_a_version_whose_fast_path_disagrees_is_served_by_the_pipeline_and_says_so(
    monkeypatch: pytest.MonkeyPatch, serving_settings: Any, clean_sample: pd.DataFrame
) -> None:
    """The same fault through the registry and the API: ``/model`` names the pipeline and why,
    and the prices served are the pipeline's own."""
    model = fit("ridge", clean_sample.head(1_000), alpha=1.0)
    version = register(serving_settings, model, clean_sample, family="ridge")
    transform = ListingFrame.transform

    def changed(self: ListingFrame, frame: pd.DataFrame) -> pd.DataFrame:
        out = transform(self, frame)
        out["bed"] = out["bed"] + 1.0
        return out

    monkeypatch.setattr(ListingFrame, "transform", changed)  # what the loaded copy runs
    with running(serving_settings) as (url, _):
        wait_until(lambda: ready_version(url) == version, 60, "the version serves")
        scoring = httpx.get(f"{url}/model").json()["scoring"]
        listing = {"state": "Texas", "city": "Austin", "bed": 3, "house_size": 1800}
        served = httpx.post(f"{url}/predict", json=listing).json()["predictions"][0]
    assert scoring.startswith("pipeline: the fast path disagreed"), scoring
    expected = pipeline_prices(model, [Listing.model_validate(listing)])[0]
    assert served == pytest.approx(round(expected, 2), abs=0.01)
