"""The evidence of a retrain decision and the reason written from it (pure: no database)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tasador.core import evidence as ev
from tasador.core import (
    narrative,
)
from tasador.core.config import Settings

STATES = ("Texas", "Ohio", "Florida", "California", "Utah")
THRESHOLDS = ev.Thresholds.from_settings(Settings(_env_file=None).drift)


def listings(
    n: int,
    seed: int,
    states: tuple[str, ...] = STATES,
    price_factor: float = 1.0,
    size_mean: float = 1_800.0,
) -> pd.DataFrame:
    """A clean-typed frame of plausible listings: price follows size and state."""
    rng = np.random.default_rng(seed)
    state = rng.choice(states, n)
    size = rng.normal(size_mean, 400, n).clip(300)
    state_factor = 1 + np.array([len(s) % 5 for s in state]) / 4  # some states cost more
    price = 150 * size * state_factor * rng.lognormal(0, 0.2, n) * price_factor
    zips = rng.integers(10_000, 10_050, n).astype(str)
    return pd.DataFrame(
        {
            "brokered_by": pd.array(rng.integers(1, 999, n).astype(str), dtype="string"),
            "status": pd.array(rng.choice(["for_sale", "sold"], n, p=[0.6, 0.4]), dtype="string"),
            "price": price,
            "bed": rng.integers(1, 6, n).astype(float),
            "bath": rng.integers(1, 4, n).astype(float),
            "acre_lot": rng.exponential(0.3, n),
            "street": pd.array(rng.integers(1, 10**6, n).astype(str), dtype="string"),
            "city": pd.array(
                [f"{s[:3]}-{z[-1]}" for s, z in zip(state, zips, strict=True)], dtype="string"
            ),
            "state": pd.array(state, dtype="string"),
            "zip_code": pd.array(zips, dtype="string"),
            "house_size": size,
            "prev_sold_date": pd.to_datetime("2010-01-01")
            + pd.to_timedelta(rng.integers(0, 4_000, n), unit="D"),
        }
    )


def evidence_of(reference: pd.DataFrame, current: pd.DataFrame, **extra) -> ev.Evidence:
    features, target, unseen = ev.compare(reference, current, THRESHOLDS)
    return ev.Evidence(
        basis="compared",
        batch=ev.BatchInfo(batch_id=2, rows_in=len(current) + 7, rows_out=len(current)),
        reference=ev.ReferenceInfo(batch_ids=[1], rows=len(reference), model_version="4"),
        thresholds=THRESHOLDS,
        features=features,
        target=target,
        unseen=unseen,
        **extra,
    )


class PricePerFoot:
    """A real (if simple) predictor: a fixed price per square foot."""

    def __init__(self, dollars: float) -> None:
        self.dollars = dollars

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return self.dollars * data["house_size"].to_numpy()


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return listings(4_000, seed=1)


def test_same_distribution_is_skipped_and_says_what_was_checked(reference: pd.DataFrame) -> None:
    evidence = evidence_of(reference, listings(3_000, seed=2))
    assert not evidence.fired and ev.verdict_of(evidence) == "skip"
    assert all(f.psi < 0.05 for f in evidence.features)
    reason = narrative.explain(evidence)
    assert reason.startswith("Skip.")
    assert "3,000 of 3,007 received rows survived cleaning" in reason
    assert "largest feature shift" in reason and "price PSI" in reason
    assert "no production model to score yet" in reason
    assert "New rows alone are no reason to retrain" in reason


def test_price_shift_retrains_and_names_the_price(reference: pd.DataFrame) -> None:
    evidence = evidence_of(reference, listings(3_000, seed=2, price_factor=2.5))
    assert evidence.target is not None and evidence.target.moved
    assert not any(f.moved for f in evidence.features)
    reason = narrative.explain(evidence)
    assert reason.startswith("Retrain.")
    assert "The price distribution moved" in reason
    median_before, median_after = evidence.target.reference_median, evidence.target.current_median
    assert median_before is not None and median_after is not None
    assert median_after / median_before == pytest.approx(2.5, rel=0.1)
    assert f"${median_before:,.0f} -> ${median_after:,.0f}" in reason


def test_new_states_retrain_and_are_named(reference: pd.DataFrame) -> None:
    current = pd.concat(
        [listings(2_700, seed=2), listings(300, seed=3, states=("Guam", "Puerto Rico"))],
        ignore_index=True,
    )
    evidence = evidence_of(reference, current)
    state = next(u for u in evidence.unseen if u.column == "state")
    assert state.fired and state.share == pytest.approx(0.1)
    assert {value for value, _ in state.top} == {"Guam", "Puerto Rico"}
    reason = narrative.explain(evidence)
    assert reason.startswith("Retrain.")
    assert "10.0% of rows have a state never seen in training" in reason
    assert "Guam" in reason and "Puerto Rico" in reason


def test_a_moved_feature_is_named_with_its_statistics(reference: pd.DataFrame) -> None:
    evidence = evidence_of(reference, listings(3_000, seed=2, size_mean=2_600))
    moved = {f.column for f in evidence.features if f.moved}
    assert "house_size" in moved
    size = next(f for f in evidence.features if f.column == "house_size")
    assert size.ks_statistic is not None and size.ks_statistic > 0.5
    reason = narrative.explain(evidence)
    assert "house_size by PSI" in reason and "KS D" in reason


def test_extra_blanks_are_reported_but_are_no_shift(reference: pd.DataFrame) -> None:
    current = listings(3_000, seed=2)
    current.loc[:1_799, "bath"] = np.nan
    current.loc[:299, "city"] = pd.NA
    evidence = evidence_of(reference, current)
    bath = next(f for f in evidence.features if f.column == "bath")
    assert not evidence.fired
    assert bath.current_missing == pytest.approx(0.6) and bath.reference_missing == 0.0
    reason = narrative.explain(evidence)
    assert reason.startswith("Skip.")
    assert "Missing values changed (bath 0.0% -> 60.0%, city 0.0% -> 10.0%)" in reason


def test_a_feature_without_any_value_cannot_be_compared(reference: pd.DataFrame) -> None:
    current = listings(3_000, seed=2)
    current["house_size"] = np.nan
    evidence = evidence_of(reference, current)
    size = next(f for f in evidence.features if f.column == "house_size")
    assert size.psi is None and size.ks_statistic is None and not size.moved
    assert size.current_missing == 1.0


def test_high_cardinality_novelty_within_chance_does_not_fire() -> None:
    # Cities drawn from a long tail: new cities appear by chance in every batch.
    rng = np.random.default_rng(0)

    def with_cities(seed: int) -> pd.DataFrame:
        frame = listings(3_000, seed=seed)
        frame["city"] = pd.array([f"town{i}" for i in rng.zipf(1.6, 3_000) % 5_000], dtype="string")
        return frame

    evidence = evidence_of(with_cities(1), with_cities(2))
    city = next(u for u in evidence.unseen if u.column == "city")
    assert city.share > 0.03 and not city.fired
    assert city.expected_share == pytest.approx(city.share, abs=0.03)


def test_model_error_beyond_its_holdout_error_retrains(reference: pd.DataFrame) -> None:
    model = PricePerFoot(dollars=150 * 1.5)
    holdout_rmsle, _ = ev.model_error(model, reference, 10_000)
    same = ev.model_check(
        model, "4", holdout_rmsle, "run_metric", listings(3_000, seed=2), THRESHOLDS
    )
    assert not same.fired and same.ratio == pytest.approx(1.0, abs=0.1)
    assert same.rows_scored == 3_000

    pricier = listings(3_000, seed=2, price_factor=3.0)
    worse = ev.model_check(model, "4", holdout_rmsle, "run_metric", pricier, THRESHOLDS)
    assert worse.fired and worse.ratio > 2
    reason = narrative.explain(evidence_of(reference, pricier, model=worse))
    assert "The production model got worse" in reason and f"{worse.ratio:.2f}x" in reason


class NaNPrices:
    """A broken predictor: every price NaN (one infinite, which RMSLE's clipping would hide)."""

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        out = np.full(len(data), np.nan)
        out[0] = -np.inf
        return out


def test_a_model_with_non_finite_output_fires_the_model_check(reference: pd.DataFrame) -> None:
    broken = NaNPrices()
    holdout_rmsle, _ = ev.model_error(broken, reference, 10_000)
    assert np.isnan(holdout_rmsle)
    current = listings(3_000, seed=2)
    check = ev.model_check(broken, "4", holdout_rmsle, "reference_holdout", current, THRESHOLDS)
    assert check.fired and check.broken and check.ratio is None
    assert check.batch_rmsle is None and check.holdout_rmsle is None
    assert check.non_finite_rows == 3_000
    evidence = evidence_of(reference, current, model=check)
    assert ev.verdict_of(evidence) == "retrain"
    reason = narrative.explain(evidence)
    assert "The production model (version 4) is broken" in reason
    assert "3,000 of the 3,000 rows of this batch NaN or infinite" in reason
    assert "holdout RMSLE is not a finite number" in reason
    as_json = json.dumps(evidence.model_dump(mode="json"), allow_nan=False)  # JSONB has no NaN
    assert ev.Evidence.model_validate(json.loads(as_json)) == evidence

    # A working model whose logged holdout metric is NaN still fires, with that reason.
    fine = PricePerFoot(dollars=150 * 1.5)
    nan_metric = ev.model_check(fine, "4", float("nan"), "run_metric", current, THRESHOLDS)
    assert nan_metric.fired and nan_metric.broken and nan_metric.non_finite_rows == 0
    assert nan_metric.batch_rmsle is not None
    reason = narrative.explain(evidence_of(reference, current, model=nan_metric))
    assert (
        "its holdout RMSLE is not a finite number" in reason and "rows of this batch" not in reason
    )


def test_model_scoring_is_bounded_by_the_sample_size(reference: pd.DataFrame) -> None:
    _, rows = ev.model_error(PricePerFoot(200.0), reference, 500)
    assert rows == 500


def test_an_operator_can_force_a_retrain_with_the_evidence_still_explained(
    reference: pd.DataFrame,
) -> None:
    evidence = evidence_of(reference, listings(3_000, seed=2), forced=True)
    assert ev.verdict_of(evidence) == "retrain"
    reason = narrative.explain(evidence)
    assert reason.startswith("Retrain (forced by the operator).")
    assert "Nothing moved beyond its limit" in reason
    assert "New rows alone" not in reason


@pytest.mark.parametrize(
    ("basis", "verdict", "words"),
    [
        ("baseline", "retrain", "baseline the first model trains on"),
        ("empty", "skip", "No row of batch 2 survived cleaning"),
        ("too_few_rows", "skip", "Too few rows: in batch 2, 0 of 10 received rows survived"),
        ("already_trained", "skip", "was trained on batch 2 already"),
    ],
)
def test_special_cases(basis: ev.Basis, verdict: str, words: str) -> None:
    evidence = ev.Evidence(
        basis=basis,
        batch=ev.BatchInfo(
            batch_id=2, rows_in=10, rows_out=0 if basis in ("empty", "too_few_rows") else 10
        ),
        reference=ev.ReferenceInfo(batch_ids=[1, 2], rows=8, model_version="3"),
        thresholds=THRESHOLDS,
    )
    assert ev.verdict_of(evidence) == verdict
    assert words in narrative.explain(evidence)


def test_evidence_survives_a_json_round_trip(reference: pd.DataFrame) -> None:
    current = listings(3_000, seed=2)
    current["acre_lot"] = np.nan  # medians of an all-missing column must stay valid JSON
    evidence = evidence_of(reference, current)
    as_json = json.dumps(evidence.model_dump(mode="json"), allow_nan=False)
    assert ev.Evidence.model_validate(json.loads(as_json)) == evidence


def test_compare_refuses_an_empty_side(reference: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="rows on both sides"):
        ev.compare(reference, reference.iloc[:0], THRESHOLDS)


def test_distribution_statistics_use_samples_but_unseen_shares_use_every_row() -> None:
    ref, cur = listings(5_000, 1), listings(5_000, 2)
    small = THRESHOLDS.model_copy(update={"sample_rows": 1_000})
    full_features, full_target, full_unseen = ev.compare(ref, cur, THRESHOLDS)
    features, target, unseen = ev.compare(ref, cur, small)
    assert target.psi != full_target.psi
    assert [f.psi for f in features] != [f.psi for f in full_features]
    assert unseen == full_unseen
    # Noisier on 1,000-row samples, but still far below the limit.
    assert target.psi < small.psi and all(f.psi < small.psi for f in features)


# --- the data API's scenarios, through API -> collector -> RAW -> CLEAN -> decide ----------
