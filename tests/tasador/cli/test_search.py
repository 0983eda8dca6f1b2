from pathlib import Path

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from experiments import search_worker
from experiments import study as search
from tasador.cli import app
from tasador.core import lineage
from tasador.core.errors import BadInput
from tasador.loop import training
from tests.helpers.search import load_batches


def test_search_runs_two_workers_on_one_study_every_trial_a_child_run(
    search_settings, raw_sample, cli_env
):
    ids = load_batches(search_settings, raw_sample.iloc[:1400], [700, 700])
    cli_env(search_settings)
    out = CliRunner().invoke(app, ["search", "--workers", "2", "--trials", "6", "--reason", "test"])
    assert out.exit_code == 0, out.output
    assert "promoted: no production model yet" in out.output

    plan = training.plan_retraining(search_settings)  # idempotent: returns the stored plan
    assert plan.batch_ids == ids and plan.n_trials == 6
    # Progress and the outcome in the terminal; library noise in the log file.
    assert f"study {plan.study_name}: " in out.output and "refitting the best trial" in out.output
    assert "Downloading artifacts" not in out.output and "WARNING" not in out.output
    assert (search_settings.state_dir / "logs" / "search.log").stat().st_size > 0
    study, _ = search.load_study(plan.study_name, search_settings)
    trials = study.get_trials(states=search.COUNTED_STATES)
    assert len(trials) >= 6
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran trials

    client = MlflowClient(search_settings.mlflow.mlflow_tracking_uri)
    by_parent = f"tags.mlflow.parentRunId = '{plan.parent_run_id}'"
    children = {r.info.run_id: r for r in client.search_runs([plan.experiment_id], by_parent)}
    trial_runs = {t.user_attrs[search.RUN_ID_ATTR] for t in study.trials}
    assert trial_runs <= set(children)
    assert {r.data.tags["tasador.run_kind"] for r in children.values()} == {"trial", "refit"}
    for t in trials:
        run = children[t.user_attrs[search.RUN_ID_ATTR]]
        assert run.data.params["family"] == t.params["family"]
        assert run.data.tags[lineage.STUDY_NAME] == plan.study_name
        assert run.data.tags[lineage.RETRAIN_REASON] == "test"
        history = client.get_metric_history(run.info.run_id, search_worker.RUNNING_CV)
        assert [m.step for m in history] == sorted(t.intermediate_values)
        if t.state == TrialState.COMPLETE:
            assert run.data.metrics["cv_rmsle"] == pytest.approx(t.value)
            assert {"cv_mae", "cv_mape", "cv_r2"} <= set(run.data.metrics)
            assert run.info.status == "FINISHED"
        else:
            assert run.info.status == "KILLED" and "cv_rmsle" not in run.data.metrics
    # The UI's leaderboard: the study's trials under its parent, sorted by RMSLE.
    leaderboard = client.search_runs(
        [plan.experiment_id],
        f"{by_parent} and tags.`tasador.run_kind` = 'trial'",
        order_by=["metrics.cv_rmsle ASC"],
    )
    assert leaderboard[0].data.metrics["cv_rmsle"] == pytest.approx(study.best_value)
    parent = client.get_run(plan.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[lineage.BATCH_IDS] == lineage.encode_batch_ids(ids)


@pytest.mark.server
def test_search_reports_a_malformed_space_clearly(settings, cli_env, tmp_path: Path):
    (tmp_path / "xgboost.yaml").write_text("family: xgboost\nparams:\n  max_depth: {type: int}\n")
    cli_env(settings.updated(search_spaces_dir=tmp_path))
    out = CliRunner().invoke(app, ["search", "--batches", "1"])
    assert out.exit_code == BadInput.exit_code
    assert f"{tmp_path / 'xgboost.yaml'}: params.max_depth.low: Field required" in out.output
