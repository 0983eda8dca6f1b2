"""Serving's scorer, made from a version's scoring artifact, gives the pipeline's very prices
for every family; one that does not is refused when it loads."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.features import ListingFrame
from serving.fast_path import FastScorer
from serving.schema import Listing
from serving.validation import Refused
from tasador.core.columns import STATUSES
from tests.helpers.models import FAMILY_NAMES, fit, small_model
from tests.helpers.serving import pipeline_prices, scorer_of


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family_model(request: pytest.FixtureRequest, clean_sample: pd.DataFrame) -> Any:
    return small_model(request.param, clean_sample)


@pytest.fixture(scope="module")
def family_scorer(family_model: Any) -> FastScorer:
    return scorer_of(family_model)[0]


def test_every_family_is_compiled_and_matches_the_pipeline(
    family_model: Any, unseen_listings: list[Listing]
) -> None:
    scorer, how = scorer_of(family_model)
    assert how.startswith(f"scoring artifact ({scorer.artifact.family}; the registered prices")
    fast, slow = scorer.predict(unseen_listings), pipeline_prices(family_model, unseen_listings)
    np.testing.assert_allclose(fast, slow, rtol=1e-9)
    assert len(fast) >= 300 and fast.std() > 0  # real, varied prices


def test_one_row_at_a_time_gives_the_same_prices(
    family_scorer: FastScorer, unseen_listings: list[Listing]
) -> None:
    listings = unseen_listings[:20]
    one_by_one = np.concatenate([family_scorer.predict([listing]) for listing in listings])
    np.testing.assert_allclose(one_by_one, family_scorer.predict(listings), rtol=1e-12)


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
def test_fast_path_matches_on_odd_listings(
    family_model: Any, family_scorer: FastScorer, batch: list[Listing]
) -> None:
    np.testing.assert_allclose(
        family_scorer.predict(batch), pipeline_prices(family_model, batch), rtol=1e-9
    )


def test_an_artifact_that_does_not_give_the_registered_prices_is_refused(
    monkeypatch: pytest.MonkeyPatch, clean_sample: pd.DataFrame
) -> None:
    """Fault injection: ``ListingFrame`` derives a column differently than serving's mirror (as
    a change to experiments/features.py would) when the artifact is written; the load refuses
    it, naming a listing and both prices."""
    model = fit("ridge", clean_sample.head(1_000), alpha=1.0)
    transform = ListingFrame.transform

    def changed(self: ListingFrame, frame: pd.DataFrame) -> pd.DataFrame:
        out = transform(self, frame)
        out["house_size"] = out["house_size"] * 1.1
        return out

    monkeypatch.setattr(ListingFrame, "transform", changed)
    with pytest.raises(Refused) as refused:
        scorer_of(model)
    assert refused.value.verdict.code == "artifact_mismatch"
    assert "does not give the prices registered with it" in str(refused.value)
    assert " instead of " in str(refused.value)
