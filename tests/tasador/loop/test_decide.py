"""Decision logic on hand-made frames whose answer is known, then through the CLEAN DB."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import uvicorn
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from typer.testing import CliRunner

from datasource.api import create_app
from datasource.generator import generate_listings
from datasource.scenarios import load_scenario
from tasador.cli import app
from tasador.core import clean_store, db, decisions_store, lineage, raw_store
from tasador.core.config import Settings, get_settings, settings_env
from tasador.core.errors import NotFound
from tasador.core.metrics import rmsle
from tasador.loop import decide, ingest
from tests.processes import stopping_embedded

STATES = ("Texas", "Ohio", "Florida", "California", "Utah")
THRESHOLDS = decide.Thresholds.from_settings(Settings(_env_file=None))


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


def evidence_of(reference: pd.DataFrame, current: pd.DataFrame, **extra) -> decide.Evidence:
    features, target, unseen = decide.compare(reference, current, THRESHOLDS)
    return decide.Evidence(
        basis="compared",
        batch=decide.BatchInfo(batch_id=2, rows_in=len(current) + 7, rows_out=len(current)),
        reference=decide.ReferenceInfo(batch_ids=[1], rows=len(reference), model_version="4"),
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
    assert not evidence.fired and decide.verdict_of(evidence) == "skip"
    assert all(f.psi < 0.05 for f in evidence.features)
    reason = decide.explain(evidence)
    assert reason.startswith("Skip.")
    assert "3,000 of 3,007 received rows survived cleaning" in reason
    assert "largest feature shift" in reason and "price PSI" in reason
    assert "no production model to score yet" in reason
    assert "New rows alone are no reason to retrain" in reason


def test_price_shift_retrains_and_names_the_price(reference: pd.DataFrame) -> None:
    evidence = evidence_of(reference, listings(3_000, seed=2, price_factor=2.5))
    assert evidence.target is not None and evidence.target.moved
    assert not any(f.moved for f in evidence.features)
    reason = decide.explain(evidence)
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
    reason = decide.explain(evidence)
    assert reason.startswith("Retrain.")
    assert "10.0% of rows have a state never seen in training" in reason
    assert "Guam" in reason and "Puerto Rico" in reason


def test_a_moved_feature_is_named_with_its_statistics(reference: pd.DataFrame) -> None:
    evidence = evidence_of(reference, listings(3_000, seed=2, size_mean=2_600))
    moved = {f.column for f in evidence.features if f.moved}
    assert "house_size" in moved
    size = next(f for f in evidence.features if f.column == "house_size")
    assert size.ks_statistic is not None and size.ks_statistic > 0.5
    reason = decide.explain(evidence)
    assert "house_size by PSI" in reason and "KS D" in reason


def test_extra_blanks_are_reported_but_are_no_shift(reference: pd.DataFrame) -> None:
    current = listings(3_000, seed=2)
    current.loc[:1_799, "bath"] = np.nan
    current.loc[:299, "city"] = pd.NA
    evidence = evidence_of(reference, current)
    bath = next(f for f in evidence.features if f.column == "bath")
    assert not evidence.fired
    assert bath.current_missing == pytest.approx(0.6) and bath.reference_missing == 0.0
    reason = decide.explain(evidence)
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
    holdout_rmsle, _ = decide.model_error(model, reference, 10_000)
    same = decide.model_check(
        model, "4", holdout_rmsle, "run_metric", listings(3_000, seed=2), THRESHOLDS
    )
    assert not same.fired and same.ratio == pytest.approx(1.0, abs=0.1)
    assert same.rows_scored == 3_000

    pricier = listings(3_000, seed=2, price_factor=3.0)
    worse = decide.model_check(model, "4", holdout_rmsle, "run_metric", pricier, THRESHOLDS)
    assert worse.fired and worse.ratio > 2
    reason = decide.explain(evidence_of(reference, pricier, model=worse))
    assert "The production model got worse" in reason and f"{worse.ratio:.2f}x" in reason


def test_model_scoring_is_bounded_by_the_sample_size(reference: pd.DataFrame) -> None:
    _, rows = decide.model_error(PricePerFoot(200.0), reference, 500)
    assert rows == 500


def test_an_operator_can_force_a_retrain_with_the_evidence_still_explained(
    reference: pd.DataFrame,
) -> None:
    evidence = evidence_of(reference, listings(3_000, seed=2), forced=True)
    assert decide.verdict_of(evidence) == "retrain"
    reason = decide.explain(evidence)
    assert reason.startswith("Retrain (forced by the operator).")
    assert "Nothing moved beyond its limit" in reason
    assert "New rows alone" not in reason


@pytest.mark.parametrize(
    ("basis", "verdict", "words"),
    [
        ("baseline", "retrain", "baseline the first model trains on"),
        ("empty", "skip", "No row of batch 2 survived cleaning"),
        ("already_trained", "skip", "was trained on batch 2 already"),
    ],
)
def test_special_cases(basis: decide.Basis, verdict: str, words: str) -> None:
    evidence = decide.Evidence(
        basis=basis,
        batch=decide.BatchInfo(batch_id=2, rows_in=10, rows_out=0 if basis == "empty" else 10),
        reference=decide.ReferenceInfo(batch_ids=[1, 2], rows=8, model_version="3"),
        thresholds=THRESHOLDS,
    )
    assert decide.verdict_of(evidence) == verdict
    assert words in decide.explain(evidence)


def test_evidence_survives_a_json_round_trip(reference: pd.DataFrame) -> None:
    current = listings(3_000, seed=2)
    current["acre_lot"] = np.nan  # medians of an all-missing column must stay valid JSON
    evidence = evidence_of(reference, current)
    as_json = json.dumps(evidence.model_dump(mode="json"), allow_nan=False)
    assert decide.Evidence.model_validate(json.loads(as_json)) == evidence


def test_compare_refuses_an_empty_side(reference: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="rows on both sides"):
        decide.compare(reference, reference.iloc[:0], THRESHOLDS)


def test_distribution_statistics_use_samples_but_unseen_shares_use_every_row() -> None:
    ref, cur = listings(5_000, 1), listings(5_000, 2)
    small = THRESHOLDS.model_copy(update={"sample_rows": 1_000})
    full_features, full_target, full_unseen = decide.compare(ref, cur, THRESHOLDS)
    features, target, unseen = decide.compare(ref, cur, small)
    assert target.psi != full_target.psi
    assert [f.psi for f in features] != [f.psi for f in full_features]
    assert unseen == full_unseen
    # Noisier on 1,000-row samples, but still far below the limit.
    assert target.psi < small.psi and all(f.psi < small.psi for f in features)


# --- the data API's scenarios, through API -> collector -> RAW -> CLEAN -> decide ----------


@contextmanager
def data_api(scenario: str, state_dir: Path) -> Iterator[str]:
    """The real data API app, served by uvicorn on a free port in a background thread."""
    app = create_app(scenario=scenario, scale=0.01, state_dir=state_dir, seed=42)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the data API did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def fresh_settings(tmp: Path, make_database: Callable[[str], str], mlflow_uri: str) -> Settings:
    """Fresh RAW/CLEAN databases, and a registered-model name nobody else uses on the server."""
    return Settings(
        state_dir=tmp / "state",
        raw_db_url=make_database("raw"),
        clean_db_url=make_database("clean"),
        mlflow_tracking_uri=mlflow_uri,
        model_name=f"decide-{uuid.uuid4().hex[:8]}",
        _env_file=None,
    )


def collect_scenario(scenario: str, settings: Settings) -> list[int]:
    """Every batch of ``scenario`` (group 1) collected into RAW and CLEAN; their ids."""
    batch_ids = []
    with data_api(scenario, settings.state_dir / "datasource") as url:
        while (result := ingest.collect_and_clean(settings, url, group=1)).report is not None:
            assert result.collected.batch_id is not None
            batch_ids.append(result.collected.batch_id)
    return batch_ids


def decided(settings: Settings, batch_id: int) -> tuple[decisions_store.Decision, decide.Evidence]:
    decision = decide.decide_batch(settings, batch_id)
    return decision, decide.Evidence.model_validate(decision.evidence)


@pytest.fixture(scope="module")
def drift_zoo(
    tmp_path_factory: pytest.TempPathFactory,
    make_database: Callable[[str], str],
    mlflow_server: str,
) -> Iterator[tuple[Settings, dict[str, int]]]:
    settings = fresh_settings(tmp_path_factory.mktemp("zoo"), make_database, mlflow_server)
    # test_the_decide_command runs the command, which embeds a PostgreSQL for the unset URLs.
    with stopping_embedded(settings):
        ids = collect_scenario("drift-zoo", settings)
        names = [b.name for b in load_scenario("drift-zoo").batches]
        assert len(ids) == len(names)
        yield settings, dict(zip(names, ids, strict=True))


def test_zoo_baseline_always_trains(drift_zoo: tuple[Settings, dict[str, int]]) -> None:
    settings, ids = drift_zoo
    decision, evidence = decided(settings, ids["baseline"])
    assert decision.verdict == "retrain" and evidence.basis == "baseline"
    assert "baseline the first model trains on" in decision.reason


def test_zoo_same_distribution_is_skipped(drift_zoo: tuple[Settings, dict[str, int]]) -> None:
    settings, ids = drift_zoo
    decision, evidence = decided(settings, ids["same-distribution"])
    assert decision.verdict == "skip", decision.reason
    assert evidence.reference is not None and evidence.reference.batch_ids == [ids["baseline"]]
    assert evidence.reference.model_version is None
    assert "Nothing moved beyond its limit" in decision.reason


def test_zoo_new_states_retrain_naming_the_states(
    drift_zoo: tuple[Settings, dict[str, int]],
) -> None:
    settings, ids = drift_zoo
    decision, evidence = decided(settings, ids["new-states"])
    assert decision.verdict == "retrain"
    state = next(u for u in evidence.unseen if u.column == "state")
    assert state.fired
    new_states = {"Alaska", "Hawaii", "Puerto Rico", "Virgin Islands", "Guam", "Montana", "Wyoming"}
    assert {value for value, _ in state.top} <= new_states
    assert "state never seen in training" in decision.reason
    assert state.top[0][0] in decision.reason
    assert evidence.target is not None and not evidence.target.moved


def test_zoo_price_shift_retrains_naming_the_price(
    drift_zoo: tuple[Settings, dict[str, int]],
) -> None:
    settings, ids = drift_zoo
    decision, evidence = decided(settings, ids["price-shift"])
    assert decision.verdict == "retrain"
    assert evidence.target is not None and evidence.target.moved
    # Only the price moved: no feature, no new category is blamed.
    assert not any(f.moved for f in evidence.features)
    assert not any(u.fired for u in evidence.unseen)
    assert "The price distribution moved" in decision.reason


def test_zoo_dirty_batch_is_judged_on_the_rows_that_survived_cleaning(
    drift_zoo: tuple[Settings, dict[str, int]],
) -> None:
    settings, ids = drift_zoo
    decision, evidence = decided(settings, ids["dirty"])
    clean_rows = clean_store.load_listings(db.engine("clean", settings), [ids["dirty"]])
    assert evidence.batch.rows_out == len(clean_rows) < evidence.batch.rows_in
    # What survived is the baseline's kind of listing with more blanks: no reason to retrain.
    assert decision.verdict == "skip", decision.reason
    assert f"{len(clean_rows):,} of {evidence.batch.rows_in:,} received rows survived" in (
        decision.reason
    )
    assert "Missing values changed" in decision.reason


def test_zoo_mix_retrains_naming_each_cause(drift_zoo: tuple[Settings, dict[str, int]]) -> None:
    settings, ids = drift_zoo
    decision, evidence = decided(settings, ids["mix"])
    assert decision.verdict == "retrain"
    assert "status" in {f.column for f in evidence.features if f.moved}
    assert next(u for u in evidence.unseen if u.column == "state").fired
    assert "status by PSI" in decision.reason and "state never seen" in decision.reason


def test_deciding_again_returns_the_stored_decision(
    drift_zoo: tuple[Settings, dict[str, int]],
) -> None:
    settings, ids = drift_zoo
    first = decide.decide_batch(settings, ids["same-distribution"])
    assert decide.decide_batch(settings, ids["same-distribution"]) == first
    forced = decide.decide_batch(settings, ids["same-distribution"], force=True)
    assert forced.id == first.id and forced.verdict == "retrain"
    assert forced.reason.startswith("Retrain (forced by the operator).")
    stored = decisions_store.latest_by_batch(db.engine("clean", settings))
    assert stored[ids["same-distribution"]] == forced


def test_deciding_an_unknown_batch_says_so(drift_zoo: tuple[Settings, dict[str, int]]) -> None:
    settings, _ = drift_zoo
    with pytest.raises(LookupError, match="batch 999 is not in the CLEAN database"):
        decide.decide_batch(settings, 999)


def test_the_course_plan(
    tmp_path_factory: pytest.TempPathFactory,
    make_database: Callable[[str], str],
    mlflow_server: str,
) -> None:
    settings = fresh_settings(tmp_path_factory.mktemp("course"), make_database, mlflow_server)
    ids = collect_scenario("course", settings)
    assert len(ids) == 6
    verdicts = {}
    for number, batch_id in enumerate(ids):
        decision, evidence = decided(settings, batch_id)
        verdicts[number] = decision.verdict
        if number in (4, 5):
            assert evidence.target is not None and evidence.target.moved
            assert "The price distribution moved" in decision.reason
    assert verdicts[0] == "retrain" and verdicts[1] == "skip"
    assert verdicts[4] == verdicts[5] == "retrain"


# --- the production model's own evidence, with a real model in a real registry ----------------


def store_generated(settings: Settings, batch_number: int, n: int, **knobs: object) -> int:
    """Generate listings, store them in RAW as the API would send them, clean them into CLEAN."""
    frame = generate_listings(n, seed=(7, batch_number), **knobs)
    rows = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    stored = raw_store.store_batch(
        db.engine("raw", settings),
        group_number=1,
        day=None,
        batch_number=batch_number,
        rows=rows,
        payload_sha256=f"{batch_number:064d}",
        source="test",
    )
    ingest.clean(settings, stored.id)
    return stored.id


def tiny_model() -> TransformedTargetRegressor:
    """Ridge on log price from size, rooms and state: small, fast, and a real price model."""
    features = ColumnTransformer(
        [
            ("numbers", SimpleImputer(strategy="median"), ["bed", "bath", "house_size"]),
            (
                "state",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="?"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["state"],
            ),
        ]
    )
    return TransformedTargetRegressor(
        regressor=make_pipeline(features, Ridge()), func=np.log, inverse_func=np.exp
    )


@pytest.fixture(scope="module")
def with_model(
    tmp_path_factory: pytest.TempPathFactory,
    make_database: Callable[[str], str],
    mlflow_server: str,
) -> tuple[Settings, dict[str, int]]:
    """CLEAN batches and a production model trained on the first one, registered with its
    lineage tags in the real MLflow server."""
    settings = fresh_settings(tmp_path_factory.mktemp("model"), make_database, mlflow_server)
    ids = {
        "train": store_generated(settings, 0, 3_000),
        "same": store_generated(settings, 1, 1_500),
        "pricier": store_generated(settings, 2, 1_500, price_multiplier=2.5),
    }
    rows = clean_store.load_listings(db.engine("clean", settings), [ids["train"]])
    train, holdout = rows[~rows["is_holdout"]], rows[rows["is_holdout"]]
    model = tiny_model().fit(train.loc[:, list(decide.FEATURE_COLUMNS)], train["price"])
    holdout_rmsle = rmsle(
        holdout["price"], model.predict(holdout.loc[:, list(decide.FEATURE_COLUMNS)])
    )

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment(settings.model_name)
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_metric(decide.HOLDOUT_METRIC, holdout_rmsle)
        logged = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=settings.model_name,
            skops_trusted_types=["numpy.dtype"],
            pip_requirements=["scikit-learn"],
        )
    version = str(logged.registered_model_version)
    client.set_model_version_tag(
        settings.model_name, version, lineage.BATCH_IDS, lineage.encode_batch_ids([ids["train"]])
    )
    client.set_registered_model_alias(settings.model_name, settings.production_alias, version)
    # A second version of the same model whose run logged no holdout metric.
    with mlflow.start_run() as bare_run:
        pass
    bare = client.create_model_version(
        settings.model_name,
        logged.model_uri,
        run_id=bare_run.info.run_id,
        model_id=logged.model_id,
    )
    client.set_model_version_tag(
        settings.model_name, bare.version, lineage.BATCH_IDS, str(ids["train"])
    )
    ids["version"], ids["bare_version"] = int(version), int(bare.version)
    assert run.info.run_id != bare_run.info.run_id
    return settings, ids


def test_the_reference_is_what_the_production_model_was_trained_on(
    with_model: tuple[Settings, dict[str, int]],
) -> None:
    settings, ids = with_model
    decision, evidence = decided(settings, ids["train"])
    assert evidence.basis == "already_trained" and decision.verdict == "skip"
    assert f"version {ids['version']}) was trained on batch {ids['train']}" in decision.reason


def test_a_model_that_still_fits_is_kept(with_model: tuple[Settings, dict[str, int]]) -> None:
    settings, ids = with_model
    decision, evidence = decided(settings, ids["same"])
    assert evidence.reference is not None
    assert evidence.reference.batch_ids == [ids["train"]]
    assert evidence.reference.model_version == str(ids["version"])
    model = evidence.model
    assert model is not None and model.holdout_source == "run_metric"
    assert not model.fired and model.ratio == pytest.approx(1.0, abs=0.15)
    assert model.rows_scored == evidence.batch.rows_out
    assert decision.verdict == "skip", decision.reason
    assert f"the production model's RMSLE is {model.batch_rmsle:.3f}" in decision.reason


def test_a_model_that_got_worse_is_retrained(with_model: tuple[Settings, dict[str, int]]) -> None:
    settings, ids = with_model
    decision, evidence = decided(settings, ids["pricier"])
    model = evidence.model
    assert model is not None and model.fired and model.ratio > 1.25
    assert decision.verdict == "retrain"
    assert "The production model got worse" in decision.reason
    assert f"{model.ratio:.2f}x (limit 1.25x)" in decision.reason


def test_without_a_logged_holdout_metric_the_holdout_rows_are_scored(
    with_model: tuple[Settings, dict[str, int]],
) -> None:
    settings, ids = with_model
    first = decide.Evidence.model_validate(decide.decide_batch(settings, ids["same"]).evidence)
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    client.set_registered_model_alias(
        settings.model_name, settings.production_alias, str(ids["bare_version"])
    )
    try:
        again = decide.Evidence.model_validate(
            decide.decide_batch(settings, ids["same"], force=True).evidence
        )
    finally:
        client.set_registered_model_alias(
            settings.model_name, settings.production_alias, str(ids["version"])
        )
    assert first.model is not None and again.model is not None
    assert again.model.holdout_source == "reference_holdout"
    assert again.model.model_version == str(ids["bare_version"])
    # The same model on the same holdout rows: the computed error equals the logged one.
    assert again.model.holdout_rmsle == pytest.approx(first.model.holdout_rmsle)


def test_the_decide_command(
    drift_zoo: tuple[Settings, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, ids = drift_zoo
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        shown = runner.invoke(app, ["decide", "--batch", str(ids["new-states"]), "--evidence"])
        missing = runner.invoke(app, ["decide", "--batch", "999"])
    finally:
        get_settings.cache_clear()
    stored = decisions_store.get(db.engine("clean", settings), ids["new-states"])
    assert shown.exit_code == 0, shown.output
    assert stored is not None
    assert shown.output.startswith(f"batch {ids['new-states']}: retrain (decision {stored.id})")
    assert stored.reason in shown.output
    assert json.loads(shown.output[shown.output.index("{") :]) == stored.evidence
    assert missing.exit_code == NotFound.exit_code and "not in the CLEAN database" in missing.output
