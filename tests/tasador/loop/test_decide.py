"""Retrain decisions through the CLEAN database and the registry (drift zoo, course plan)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from typer.testing import CliRunner

from datasource.api import create_app
from datasource.scenarios import load_scenario
from tasador.cli import app
from tasador.core import (
    clean_store,
    db,
    decisions_store,
    lineage,
    names,
)
from tasador.core import evidence as ev
from tasador.core.config import Settings, get_settings, settings_env
from tasador.core.errors import NotFound
from tasador.core.metrics import rmsle
from tasador.loop import decide, ingest
from tests.helpers.listings import store_generated
from tests.helpers.processes import stopping_embedded
from tests.helpers.serving import serve_in_thread


@contextmanager
def data_api(scenario: str, state_dir: Path) -> Iterator[str]:
    """The real data API app, served by uvicorn on a free port in a background thread."""
    app = create_app(scenario=scenario, scale=0.01, state_dir=state_dir, seed=42)
    with serve_in_thread(app, "the data API") as url:
        yield url


def fresh_settings(
    tmp: Path, make_migrated_database: Callable[[str], str], mlflow_uri: str
) -> Settings:
    """Fresh RAW/CLEAN databases, and a registered-model name nobody else uses on the server."""
    return Settings(
        state_dir=tmp / "state",
        raw_db_url=make_migrated_database("raw"),
        clean_db_url=make_migrated_database("clean"),
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


def decided(settings: Settings, batch_id: int) -> tuple[decisions_store.Decision, ev.Evidence]:
    decision = decide.decide_batch(settings, batch_id)
    return decision, ev.Evidence.model_validate(decision.evidence)


@pytest.fixture(scope="module")
def drift_zoo(
    tmp_path_factory: pytest.TempPathFactory,
    make_migrated_database: Callable[[str], str],
    mlflow_server: str,
) -> Iterator[tuple[Settings, dict[str, int]]]:
    settings = fresh_settings(tmp_path_factory.mktemp("zoo"), make_migrated_database, mlflow_server)
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
    clean_rows = clean_store.load_listings(db.engine("clean", settings.databases), [ids["dirty"]])
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
    stored = decisions_store.latest_by_batch(db.engine("clean", settings.databases))
    assert stored[ids["same-distribution"]] == forced


def test_deciding_an_unknown_batch_says_so(drift_zoo: tuple[Settings, dict[str, int]]) -> None:
    settings, _ = drift_zoo
    with pytest.raises(LookupError, match="batch 999 is not in the CLEAN database"):
        decide.decide_batch(settings, 999)


def test_the_course_plan(
    tmp_path_factory: pytest.TempPathFactory,
    make_migrated_database: Callable[[str], str],
    mlflow_server: str,
) -> None:
    settings = fresh_settings(
        tmp_path_factory.mktemp("course"), make_migrated_database, mlflow_server
    )
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
    make_migrated_database: Callable[[str], str],
    mlflow_server: str,
) -> tuple[Settings, dict[str, int]]:
    """CLEAN batches and a production model trained on the first one, registered with its
    lineage tags in the real MLflow server."""
    settings = fresh_settings(
        tmp_path_factory.mktemp("model"), make_migrated_database, mlflow_server
    )
    ids = {
        "train": store_generated(settings, 0, 3_000),
        "same": store_generated(settings, 1, 1_500),
        "pricier": store_generated(settings, 2, 1_500, price_multiplier=2.5),
    }
    rows = clean_store.load_listings(db.engine("clean", settings.databases), [ids["train"]])
    train, holdout = rows[~rows["is_holdout"]], rows[rows["is_holdout"]]
    model = tiny_model().fit(train.loc[:, list(ev.FEATURE_COLUMNS)], train["price"])
    holdout_rmsle = rmsle(holdout["price"], model.predict(holdout.loc[:, list(ev.FEATURE_COLUMNS)]))

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment(settings.mlflow.model_name)
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_metric(names.HOLDOUT_PRIMARY, holdout_rmsle)
        logged = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=settings.mlflow.model_name,
            skops_trusted_types=["numpy.dtype"],
            pip_requirements=["scikit-learn"],
        )
    version = str(logged.registered_model_version)
    client.set_model_version_tag(
        settings.mlflow.model_name,
        version,
        lineage.BATCH_IDS,
        lineage.encode_batch_ids([ids["train"]]),
    )
    client.set_registered_model_alias(
        settings.mlflow.model_name, settings.mlflow.production_alias, version
    )
    # A second version of the same model whose run logged no holdout metric.
    with mlflow.start_run() as bare_run:
        pass
    bare = client.create_model_version(
        settings.mlflow.model_name,
        logged.model_uri,
        run_id=bare_run.info.run_id,
        model_id=logged.model_id,
    )
    client.set_model_version_tag(
        settings.mlflow.model_name, bare.version, lineage.BATCH_IDS, str(ids["train"])
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
    first = ev.Evidence.model_validate(decide.decide_batch(settings, ids["same"]).evidence)
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow.mlflow_tracking_uri)
    client.set_registered_model_alias(
        settings.mlflow.model_name, settings.mlflow.production_alias, str(ids["bare_version"])
    )
    try:
        again = ev.Evidence.model_validate(
            decide.decide_batch(settings, ids["same"], force=True).evidence
        )
    finally:
        client.set_registered_model_alias(
            settings.mlflow.model_name, settings.mlflow.production_alias, str(ids["version"])
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
    stored = decisions_store.get(db.engine("clean", settings.databases), ids["new-states"])
    assert shown.exit_code == 0, shown.output
    assert stored is not None
    assert shown.output.startswith(f"batch {ids['new-states']}: retrain (decision {stored.id})")
    assert stored.reason in shown.output
    assert json.loads(shown.output[shown.output.index("{") :]) == stored.evidence
    assert missing.exit_code == NotFound.exit_code and "not in the CLEAN database" in missing.output
