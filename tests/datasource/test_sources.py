import numpy as np
import pandas as pd
import pytest

from datasource.scenarios import load_scenario
from datasource.sources import ScenarioSource


@pytest.fixture(scope="module")
def course() -> ScenarioSource:
    return ScenarioSource(load_scenario("course"), scale=0.005, seed=42)


@pytest.fixture(scope="module")
def zoo() -> list[pd.DataFrame]:
    source = ScenarioSource(load_scenario("drift-zoo"), scale=0.01, seed=42)
    return [source.batch(1, None, k) for k in range(6)]


def test_a_batch_is_a_function_of_seed_group_day_and_number(course: ScenarioSource) -> None:
    again = ScenarioSource(load_scenario("course"), scale=0.005, seed=42)
    pd.testing.assert_frame_equal(course.batch(1, None, 0), again.batch(1, None, 0))
    others = [
        course.batch(2, None, 0),
        course.batch(1, "Tuesday", 0),
        ScenarioSource(load_scenario("course"), scale=0.005, seed=43).batch(1, None, 0),
    ]
    for other in others:
        assert not other["price"].equals(course.batch(1, None, 0)["price"])
    assert course.key != ScenarioSource(load_scenario("course"), scale=0.01, seed=42).key


def test_course_batches_follow_the_plan(course: ScenarioSource) -> None:
    batches = [course.batch(3, None, k) for k in range(6)]
    assert [len(b) for b in batches] == course.batch_sizes()
    assert all(not b.isna().any().any() for b in batches)
    for k in (0, 1):
        assert set(batches[k]["status"]) == {"for_sale"} and batches[k]["price"].max() <= 300_000
    assert set(batches[2]["status"]) == {"sold"} and batches[2]["price"].max() <= 300_000
    assert batches[3]["state"].nunique() == 1
    assert batches[3]["price"].between(10_000, 300_000, inclusive="right").all()
    assert set(batches[4]["status"]) == {"for_sale", "sold"}
    assert batches[4]["price"].between(300_000, 500_000, inclusive="right").all()
    assert batches[5]["price"].gt(500_000).all()
    assert batches[5]["state"].nunique() > 30


def test_drift_zoo_baseline_and_repeat_look_alike(zoo: list[pd.DataFrame]) -> None:
    baseline, same = zoo[0], zoo[1]
    assert not baseline.equals(same)
    ratio = same["price"].median() / baseline["price"].median()
    assert 0.9 < ratio < 1.1
    shares = pd.concat(
        [f["state"].value_counts(normalize=True) for f in (baseline, same)], axis=1
    ).fillna(0)
    assert (shares.iloc[:, 0] - shares.iloc[:, 1]).abs().sum() < 0.2


def test_drift_zoo_new_states_appear_only_later(zoo: list[pd.DataFrame]) -> None:
    seen = set(zoo[0]["state"]) | set(zoo[1]["state"])
    new = set(zoo[2]["state"]) - seen
    assert {"Hawaii", "Alaska", "Puerto Rico"} <= new
    assert zoo[2]["state"].isin(new).mean() > 0.2


def test_drift_zoo_price_shift_keeps_features(zoo: list[pd.DataFrame]) -> None:
    baseline, shifted = zoo[0], zoo[3]
    assert shifted["price"].median() / baseline["price"].median() == pytest.approx(1.6, rel=0.1)
    # Sizes are heavy-tailed (calibrated on real rows): two 2,000-row medians differ by up to ~6%
    # across seeds, far from the prices' 1.6x.
    size_ratio = shifted["house_size"].median() / baseline["house_size"].median()
    assert 0.9 < size_ratio < 1.1
    excluded = load_scenario("drift-zoo").batches[0].exclude_states
    assert not shifted["state"].isin(excluded).any()


def test_drift_zoo_dirty_batch_is_dirty(zoo: list[pd.DataFrame]) -> None:
    baseline, dirty = zoo[0], zoo[4]
    assert baseline.astype(str).duplicated().sum() == 0
    assert dirty.astype(str).duplicated().mean() > 0.02
    assert dirty["price"].isna().mean() > baseline["price"].isna().mean() + 0.05
    prices = pd.to_numeric(dirty["price"], errors="coerce")
    assert (prices == 0).any()
    assert dirty["bed"].map(lambda v: isinstance(v, str)).any()


def test_drift_zoo_mix_moves_several_things(zoo: list[pd.DataFrame]) -> None:
    baseline, mix = zoo[0], zoo[5]
    assert mix["status"].eq("sold").mean() > baseline["status"].eq("sold").mean() + 0.2
    assert mix["state"].isin(["Hawaii", "Alaska", "Puerto Rico", "Montana"]).any()
    assert mix.astype(str).duplicated().any()
    assert np.isfinite(pd.to_numeric(mix["price"], errors="coerce")).mean() > 0.9
