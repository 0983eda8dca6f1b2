"""The fast path gives the pipeline's very prices, and steps aside when it cannot."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.fast_path import FastScorer, compile_fast_path, pipeline_prices
from serving.schema import Listing
from tasador.core.columns import STATUSES, TARGET
from tests.serving.conftest import fit


def listings_of(frame: pd.DataFrame) -> list[Listing]:
    """The sample's rows as the API receives them (JSON-like values, blanks left out)."""
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


@pytest.fixture(scope="module", params=["xgb_model", "lgbm_model"])
def booster(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


def test_fast_path_reproduces_the_pipeline_on_the_sample(
    booster: Any, clean_sample: pd.DataFrame
) -> None:
    scorer, how = compile_fast_path(booster)
    assert isinstance(scorer, FastScorer), how
    listings = listings_of(clean_sample.sample(1_500, random_state=1))
    fast, slow = scorer.predict(listings), pipeline_prices(booster, listings)
    np.testing.assert_allclose(fast, slow, rtol=1e-9)
    assert fast.std() > 0  # real, varied prices


def test_one_row_at_a_time_gives_the_same_prices(
    xgb_model: Any, clean_sample: pd.DataFrame
) -> None:
    scorer = FastScorer(xgb_model)
    listings = listings_of(clean_sample.head(20))
    one_by_one = np.concatenate([scorer.predict([listing]) for listing in listings])
    np.testing.assert_array_equal(one_by_one, scorer.predict(listings))


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
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(generated, min_size=1, max_size=30))
def test_fast_path_matches_on_generated_listings(xgb_model: Any, batch: list[Listing]) -> None:
    np.testing.assert_allclose(
        FastScorer(xgb_model).predict(batch), pipeline_prices(xgb_model, batch), rtol=1e-9
    )


def test_other_pipelines_are_served_by_the_pipeline_itself(clean_sample: pd.DataFrame) -> None:
    ridge = fit("ridge", clean_sample.head(1_000), alpha=1.0)
    scorer, how = compile_fast_path(ridge)
    assert scorer is None
    assert "not mirrored" in how
