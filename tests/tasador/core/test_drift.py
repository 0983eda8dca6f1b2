"""Each drift statistic on hand-made data whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasador.core import drift

RNG = np.random.default_rng(7)


def normal(n: int, mean: float = 0.0) -> pd.Series:
    return pd.Series(RNG.normal(mean, 1.0, n))


def test_psi_of_identical_samples_is_zero() -> None:
    values = normal(5_000)
    assert drift.psi(drift.numeric_buckets(values, values.copy())) == pytest.approx(0.0, abs=1e-12)


def test_psi_of_two_draws_from_one_distribution_is_small() -> None:
    assert drift.psi(drift.numeric_buckets(normal(20_000), normal(20_000))) < 0.01


def test_psi_of_disjoint_samples_is_far_beyond_significant() -> None:
    low, high = pd.Series(np.arange(1_000.0)), pd.Series(np.arange(5_000.0, 6_000.0))
    assert drift.psi(drift.numeric_buckets(low, high)) > 2.0


def test_psi_grows_with_the_shift() -> None:
    ref = normal(20_000)
    small = drift.psi(drift.numeric_buckets(ref, normal(20_000, mean=0.2)))
    large = drift.psi(drift.numeric_buckets(ref, normal(20_000, mean=1.0)))
    assert 0.02 < small < 0.1 < 0.5 < large


def test_numeric_buckets_count_present_values_only() -> None:
    ref = pd.Series([1.0, 2.0, 3.0, 4.0, np.nan])
    cur = pd.Series([np.nan, np.nan, np.nan, 2.0])
    buckets = drift.numeric_buckets(ref, cur, bins=4)
    assert buckets.reference.sum() == 4 and buckets.current.sum() == 1


def test_more_missing_cells_alone_are_not_a_shift_but_are_reported() -> None:
    ref = normal(5_000)
    cur = ref.copy()
    cur[:2_500] = np.nan
    assert drift.psi(drift.numeric_buckets(ref, cur)) < 0.01
    assert drift.missing_share(ref) == 0.0 and drift.missing_share(cur) == 0.5
    assert drift.missing_share(pd.Series([], dtype=float)) == 0.0


def test_integer_features_get_one_bucket_per_value_not_duplicate_edges() -> None:
    beds = pd.Series(RNG.integers(1, 6, 10_000).astype(float))
    buckets = drift.numeric_buckets(beds, beds)
    assert len(buckets.labels) == len(set(buckets.labels))
    assert (buckets.reference[:-1] > 0).all()


def test_dates_compare_as_decimal_years() -> None:
    dates = pd.Series(pd.to_datetime(["2000-01-01", "2010-07-02", None]))
    years = drift.as_numbers(dates)
    assert years[0] == pytest.approx(2000.0)
    assert years[1] == pytest.approx(2010.5, abs=0.01)
    assert np.isnan(years[2])


def test_ks_same_distribution_versus_shifted() -> None:
    same = drift.ks_two_sample(normal(4_000), normal(4_000))
    moved = drift.ks_two_sample(normal(4_000), normal(4_000, mean=1.0))
    assert same is not None and moved is not None
    assert same.statistic < 0.05 and same.p_value > 0.01
    # N(0,1) vs N(1,1): the CDFs are furthest apart at 0.5, by 2*Phi(0.5)-1 = 0.383.
    assert moved.statistic == pytest.approx(0.383, abs=0.04) and moved.p_value < 1e-10


def test_ks_ignores_missing_values_and_needs_values_on_both_sides() -> None:
    with_gaps = pd.Series([1.0, np.nan, 2.0, 3.0, np.nan])
    result = drift.ks_two_sample(with_gaps, pd.Series([1.0, 2.0, 3.0]))
    assert result is not None and result.statistic == 0.0
    assert drift.ks_two_sample(with_gaps, pd.Series([np.nan, np.nan])) is None


def test_categorical_buckets_keep_top_categories_then_other() -> None:
    ref = pd.Series(["a"] * 5 + ["b"] * 3 + ["c"] + [None])
    cur = pd.Series(["a", "z", "z", None, None])
    buckets = drift.categorical_buckets(ref, cur, top=2)
    assert buckets.labels == ["a", "b", drift.OTHER]
    assert buckets.reference.tolist() == [5, 3, 1]
    assert buckets.current.tolist() == [1, 0, 2]


def test_categorical_psi_and_chi_square() -> None:
    states = np.array(["Texas", "Ohio", "Utah"])
    ref = pd.Series(RNG.choice(states, 6_000, p=[0.5, 0.3, 0.2]))
    same = pd.Series(RNG.choice(states, 6_000, p=[0.5, 0.3, 0.2]))
    moved = pd.Series(RNG.choice(states, 6_000, p=[0.1, 0.3, 0.6]))

    same_b, moved_b = drift.categorical_buckets(ref, same), drift.categorical_buckets(ref, moved)
    assert drift.psi(same_b) < 0.01 < 0.2 < drift.psi(moved_b)
    assert drift.chi_square(same_b).p_value > 0.01
    assert drift.chi_square(moved_b).p_value < 1e-10


def test_chi_square_on_identical_counts_finds_nothing() -> None:
    counts = np.array([10, 20, 30])
    result = drift.chi_square(drift.Buckets(["x", "y", "z"], counts, counts.copy()))
    assert result.statistic == pytest.approx(0.0) and result.p_value == pytest.approx(1.0)


def test_unseen_share_counts_rows_with_new_categories() -> None:
    ref = pd.Series(["Texas"] * 50 + ["Ohio"] * 50)
    cur = pd.Series(["Texas"] * 6 + ["Guam"] * 3 + ["Puerto Rico"] + [None] * 10)
    result = drift.unseen(ref, cur)
    assert result.share == pytest.approx(0.4)  # 4 of the 10 rows that have a state
    assert result.expected_share == 0.0  # no state seen once: nothing new expected by chance
    assert result.top == [("Guam", 3), ("Puerto Rico", 1)]


def test_unseen_expected_share_is_the_reference_singleton_share() -> None:
    # A long tail (many cities seen once) means new cities are expected by chance.
    ref = pd.Series(["Austin"] * 6 + [f"town{i}" for i in range(4)])
    assert drift.unseen(ref, pd.Series(["Austin"])).expected_share == pytest.approx(0.4)


def test_psi_refuses_an_empty_side() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        drift.psi(drift.numeric_buckets(pd.Series([1.0, 2.0]), pd.Series([np.nan])))


def test_median_skips_missing() -> None:
    assert drift.median(pd.Series([1.0, np.nan, 3.0, 10.0])) == 3.0
    assert drift.median(pd.Series([np.nan])) is None
