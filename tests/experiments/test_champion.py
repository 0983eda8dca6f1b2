import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna_dashboard import get_note

from experiments import (
    champion,
    data,
    explain,
    leaderboard,
    promotions,
    refit,
    registry,
    runs,
    search_worker,
)
from experiments import study as search
from experiments.inputs import model_input
from experiments.scoring import artifact
from tasador.core import db, decisions_store, lineage, names
from tasador.loop import training
from tests.helpers.search import load_batches, write_spaces

RIDGE = "family: ridge\nparams:\n  alpha: {{type: float, low: {low}, high: {high}, log: true}}\n"
LIGHTGBM = """\
family: lightgbm
params:
  n_estimators: {type: int, low: 150, high: 200}
  learning_rate: {type: float, low: 0.05, high: 0.1}
  num_leaves: {type: int, low: 8, high: 16}
"""


def _retrain(settings, batch_ids, spaces_dir, reason=None, decision_id=None):
    staged = settings.updated(search_spaces_dir=spaces_dir, search_trials=2)
    plan = training.plan_retraining(staged, decision_id, batch_ids=batch_ids, reason=reason)
    search_worker.run_worker(plan.study_name, staged)
    return plan, champion.finish_study(plan.study_name, staged)


class AliasSpy:
    """Counts alias moves while letting them reach the real server."""

    def __init__(self, monkeypatch):
        self.calls = []
        self.holdout_rmsle = []  # on the version's run when the alias moved (serving reads it)
        real = MlflowClient.set_registered_model_alias

        def spy(client, name, alias, version):
            if alias == "production":  # `challenger` follows every candidate
                self.calls.append((alias, str(version)))
                run_id = client.get_model_version(name, str(version)).run_id
                metrics = client.get_run(run_id).data.metrics
                self.holdout_rmsle.append(metrics.get(names.HOLDOUT_PRIMARY))
            return real(client, name, alias, version)

        monkeypatch.setattr(MlflowClient, "set_registered_model_alias", spy)


def test_only_a_better_challenger_is_promoted_and_history_is_kept(
    search_settings, raw_sample, tmp_path, monkeypatch
):
    settings = search_settings
    ids = load_batches(settings, raw_sample.iloc[:2400], [600, 600, 600, 600])
    # A heavily regularized baseline: the generated prices are log-linear, so a well-tuned ridge
    # is as good as boosting on them, and the boosted challenger must be clearly better.
    ridge = write_spaces(tmp_path / "ridge", {"ridge": RIDGE.format(low=300, high=600)})
    bad = write_spaces(tmp_path / "bad", {"ridge": RIDGE.format(low=1e5, high=1e6)})
    boosted = write_spaces(tmp_path / "boosted", {"lightgbm": LIGHTGBM})
    spy = AliasSpy(monkeypatch)
    client = MlflowClient(settings.mlflow.mlflow_tracking_uri)

    plan1, first = _retrain(settings, ids[:2], ridge, "baseline")
    assert first.promoted and first.production is None
    assert spy.calls == [("production", "1")]

    plan2, worse = _retrain(settings, ids[:3], bad, "drift in state")
    assert not worse.promoted
    # optuna-dashboard shows the objective's name, why the study ran and what came of it.
    study = optuna.load_study(study_name=plan2.study_name, storage=search.storage(settings))
    assert study.metric_names == ["RMSLE"]
    assert "drift in state" in get_note(study) and worse.summary in get_note(study)
    assert worse.production.version == 1
    assert worse.challenger.metrics["rmsle"] > worse.production.metrics["rmsle"]
    assert spy.calls == [("production", "1")]  # the alias did not move

    decision = decisions_store.save(
        db.engine("clean", settings.databases),
        ids[3],
        "retrain",
        "model error rose",
        {"checks": []},
    )
    plan3, better = _retrain(settings, ids, boosted, decision_id=decision.id)
    assert better.promoted and better.production.version == 1
    assert better.challenger.metrics["rmsle"] < 0.99 * better.production.metrics["rmsle"]
    assert spy.calls == [("production", "1"), ("production", "3")]  # one call per promotion
    assert (
        client.get_model_version_by_alias(settings.mlflow.model_name, "production").version == "3"
    )
    # Serving validates a version against its holdout RMSLE as soon as the alias moves.
    assert spy.holdout_rmsle == pytest.approx(
        [first.challenger.metrics["rmsle"], better.challenger.metrics["rmsle"]]
    )

    # Every version stays registered, with lineage on the version and metrics on its run.
    versions = client.search_model_versions(f"name = '{settings.mlflow.model_name}'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3]
    v3 = client.get_model_version(settings.mlflow.model_name, "3")
    assert v3.tags[lineage.BATCH_IDS] == lineage.encode_batch_ids(ids)
    assert v3.tags[lineage.STUDY_NAME] == plan3.study_name
    assert v3.tags[lineage.RETRAIN_REASON] == "model error rose"
    assert v3.tags["promoted"] == "True"
    run = client.get_run(v3.run_id)
    # The validation sample serving checks it on: shared-holdout listings with their prices.
    sample = registry.load_validation(client, v3)
    assert len(sample["listings"]) == len(sample["prices"]) == min(256, better.holdout_rows)
    assert all(price > 0 for price in sample["prices"])
    assert run.data.metrics["holdout_rmsle"] == pytest.approx(better.challenger.metrics["rmsle"])
    assert run.data.tags["mlflow.parentRunId"] == plan3.parent_run_id
    table = json.loads(
        Path(client.download_artifacts(v3.run_id, names.COMPARISON_FILE, str(tmp_path))).read_text()
    )
    assert [r[0] for r in table["data"]] == ["challenger", "production"]
    # The evidence it was promoted on: the interval on its run, each segment's RMSLEs beside it.
    assert "interval of the improvement" in better.summary and "1% margin" in better.summary
    assert run.data.metrics["promotion_improvement_low"] > settings.promotion.promotion_margin
    segments = json.loads(
        Path(client.download_artifacts(v3.run_id, names.SEGMENTS_FILE, str(tmp_path))).read_text()
    )
    assert segments["columns"][:2] == ["segment", "rows"]
    assert {"land", "houses"} & {r[0] for r in segments["data"]}

    # MLflow as the leaderboard: each candidate's logged model carries its holdout metrics,
    # linked to the holdout dataset; the Models tab sorts them (search_logged_models).
    model_ids = {registry.model_id_of(v): int(v.version) for v in versions}
    ranked = [m for m in leaderboard.ranked_models(client, plan3.experiment_id)]
    ranked = [m for m in ranked if m.model_id in model_ids]
    assert len(ranked) == 3
    scores = [{m.key: m for m in model.metrics}["holdout_rmsle"] for model in ranked]
    assert [m.value for m in scores] == sorted(m.value for m in scores)
    assert model_ids[ranked[0].model_id] == 3  # the boosted model ranks first
    assert scores[0].value == pytest.approx(better.challenger.metrics["rmsle"])
    assert scores[0].dataset_name == "holdout"
    inputs = {d.tags[0].value: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "holdout"}
    assert inputs["training"].digest == plan3.data_hash[: leaderboard.DIGEST_CHARS]
    assert scores[0].dataset_digest == inputs["holdout"].digest
    assert client.get_run(plan3.parent_run_id).data.metrics["holdout_rmsle"] == pytest.approx(
        better.challenger.metrics["rmsle"]
    )
    # The version's description is its model card; the latest candidate is the challenger.
    card = v3.description
    assert "promoted to production" in card and "model error rose" in card
    assert f"{plan3.training_rows:,} training rows" in card and "Top SHAP drivers" in card
    assert "Holdout: RMSLE" in card and "MAE $" in card
    assert (
        client.get_model_version_by_alias(settings.mlflow.model_name, "challenger").version == "3"
    )
    assert run.data.tags[leaderboard.CODE_VERSION_TAG] not in ("", "unknown")
    # The SHAP background (training rows) is stored with the version.
    background = registry.load_background(client, v3)
    assert background is not None and 0 < len(background) <= explain.BACKGROUND_ROWS

    # The study in pictures, on the version's run, embedded in the report.
    pictures = {a.path for a in client.list_artifacts(v3.run_id, "study")}
    assert pictures == {"study/history.png", "study/importance.png", "study/parallel.png"}

    # SHAP table, plot and sentence, and the report, on the version's run.
    shap_files = {a.path for a in client.list_artifacts(v3.run_id, "shap")}
    assert shap_files == {"shap/importance.csv", "shap/importance.png", "shap/summary.txt"}
    assert v3.tags["shap_summary"] == better.shap_sentence
    assert "Against production version 1" in better.shap_sentence
    report = Path(client.download_artifacts(v3.run_id, "report/model_change.md", str(tmp_path)))
    text = report.read_text()
    assert text == better.report
    assert f"Decision {decision.id} on batch {ids[3]}" in text and "model error rose" in text
    assert "| lightgbm |" in text and "promoted to production" in text
    assert better.shap_sentence in text
    assert "![history.png](../study/history.png)" in text
    assert "production version 1" in worse.report and "not promoted" in worse.report

    # The audit says which version was production when.
    history = promotions.history(db.engine("clean", settings.databases), settings.mlflow.model_name)
    assert [(h.challenger_version, h.previous_version, h.promoted) for h in history] == [
        (1, None, True),
        (2, 1, False),
        (3, 1, True),
    ]
    engine = db.engine("clean", settings.databases)
    assert promotions.production_at(engine, settings.mlflow.model_name, history[1].decided_at) == 1
    assert promotions.production_at(engine, settings.mlflow.model_name, datetime.now(UTC)) == 3

    # Finishing a study again decides nothing new and registers nothing new.
    again = champion.finish_study(plan1.study_name, settings.updated(search_spaces_dir=ridge))
    assert again.challenger.version == 1 and again.promoted
    assert len(client.search_model_versions(f"name = '{settings.mlflow.model_name}'")) == 3
    assert len(spy.calls) == 2
    assert (
        client.get_model_version_by_alias(settings.mlflow.model_name, "challenger").version == "3"
    )


def test_production_model_loads_in_a_fresh_process_from_json_like_fields(
    search_settings, raw_sample, tmp_path
):
    ids = load_batches(search_settings, raw_sample.iloc[:1200], [600, 600])
    boosted = write_spaces(tmp_path / "boosted", {"lightgbm": LIGHTGBM})
    _retrain(search_settings, ids, boosted, "baseline")
    code = f"""
import json
import mlflow
from experiments.inputs import model_input
from experiments import registry
from tasador.core.config import Settings
from tasador.core.process import prepare_process
prepare_process()
uri = {search_settings.mlflow.mlflow_tracking_uri!r}
registry.connect(Settings(mlflow_tracking_uri=uri, _env_file=None))
model = mlflow.pyfunc.load_model("models:/{search_settings.mlflow.model_name}@production")
rows = [{{"status": "for_sale", "bed": 3, "bath": 2, "house_size": 1800, "state": "Texas",
         "city": "Austin", "zip_code": 78701.0, "prev_sold_date": "2019-05-01"}},
        {{"state": "Ohio", "extra": 1}}]
print(json.dumps([float(p) for p in model.predict(model_input(rows))]))
print(type(model.get_raw_model()).__name__)
"""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()
    prices = json.loads(out[-2])
    assert len(prices) == 2 and all(10_000 < p < 10_000_000 for p in prices)
    assert out[-1] == "TransformedTargetRegressor"


def test_the_refit_step_alone_registers_the_best_trial_once(search_settings, raw_sample):
    settings = search_settings.updated(search_trials=2)
    ids = load_batches(settings, raw_sample.iloc[:1200], [600, 600])
    plan = search.prepare_study(settings, ids)
    search_worker.run_worker(plan.study_name, settings)
    study, _ = search.load_study(plan.study_name, settings)
    best = refit.best_trial(study)
    holdout = data.holdout_rows(settings, ids)
    client = registry.connect(settings)

    first = refit.refit_and_register(settings, client, plan, best, holdout)
    assert first.version == 1 and first.family == best.params["family"]
    assert len(first.model.predict(model_input(holdout.head(3)))) == 3
    version = client.get_model_version(settings.mlflow.model_name, "1")
    assert version.run_id == first.run_id
    assert version.tags[lineage.STUDY_NAME] == plan.study_name
    assert json.loads(version.tags[registry.PARAMS_TAG]) == best.params
    run = client.get_run(first.run_id)
    assert run.data.tags[runs.KIND_TAG] == "refit"
    assert run.data.tags["mlflow.parentRunId"] == plan.parent_run_id
    assert run.data.metrics["cv_rmsle"] == pytest.approx(best.value)
    # Its price ranges, calibrated on training rows, stored as data and measured on the holdout.
    with tempfile.TemporaryDirectory() as folder:
        stored = registry.download_scoring(client, version, Path(folder))
        assert stored is not None
        ranges = artifact.read(stored).ranges
    assert ranges is not None and "out-of-fold" in ranges.calibration
    assert ranges.holdout_rows["overall"] == len(holdout)
    for kind, share in ranges.holdout["80"].items():
        suffix = "" if kind == "overall" else f"_{kind}"
        assert run.data.metrics[f"range_coverage_80{suffix}"] == pytest.approx(share)
    assert 0.6 < run.data.metrics["range_coverage_80"] <= 1.0  # ~80% of a few hundred rows
    # The step alone decides nothing: no verdict on the version, no production alias.
    assert registry.PROMOTED_TAG not in version.tags
    assert registry.production_version(client, settings) is None

    # Called again, it loads the version it registered instead of fitting another.
    again = refit.refit_and_register(settings, client, plan, best, holdout)
    assert (again.version, again.run_id) == (1, first.run_id)
    assert len(client.search_model_versions(f"name = '{settings.mlflow.model_name}'")) == 1
