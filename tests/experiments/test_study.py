import multiprocessing
import time

import optuna
import psutil
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from experiments import progress, search_worker
from experiments import study as search
from tasador.core import db, tables
from tasador.core.errors import Conflict
from tests.helpers.search import write_spaces


def test_study_name_follows_the_batch_range():
    assert search.study_name_for([3, 1, 2], "m") == "m-batches-1-3"
    assert search.study_name_for([4], "m") == "m-batches-4"
    gappy = search.study_name_for([1, 2, 5], "m")
    assert gappy.startswith("m-batches-1-5-") and gappy != search.study_name_for([1, 3, 5], "m")
    with pytest.raises(ValueError):
        search.study_name_for([], "m")


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_the_sampler_is_seeded_by_the_plan_worker_and_restart(sampler):
    plan = search.StudyPlan(
        study_name="s", batch_ids=[1], data_hash="h", training_rows=10, experiment_id="1",
        parent_run_id="r", n_trials=8, cv_folds=2, sample_rows=10, seed=7, sampler=sampler,
        spaces={},
    )  # fmt: skip

    def first_suggestions(seed: int, worker: int | None, trials_before: int) -> list[float]:
        chosen = search._sampler(plan.model_copy(update={"seed": seed}), worker, trials_before)
        study = optuna.create_study(sampler=chosen)
        return [study.ask().suggest_float("x", 0, 1) for _ in range(3)]

    first = first_suggestions(7, 0, 0)
    assert first_suggestions(7, 0, 0) == first  # a one-worker study repeats
    assert first_suggestions(7, None, 0) == first
    assert first_suggestions(7, 1, 0) != first  # two workers try different first trials
    assert first_suggestions(7, 0, 5) != first  # so does a restarted worker
    assert first_suggestions(8, 0, 0) != first


def _load(settings, raw_sample):
    from tests.helpers.search import load_batches

    return load_batches(settings, raw_sample.iloc[:1400], [700, 700])


def test_a_killed_workers_trial_is_retried(search_settings, raw_sample, tmp_path):
    # One slow family, so the worker is surely mid-trial when it is killed.
    slow = write_spaces(
        tmp_path / "slow",
        {
            "random_forest": "family: random_forest\n"
            "params:\n  n_estimators: {type: int, low: 600, high: 700}\n"
        },
    )
    settings = search_settings.updated(search_spaces_dir=slow, search_trials=2)
    plan = search.prepare_study(settings, _load(settings, raw_sample))

    process = multiprocessing.get_context("spawn").Process(
        target=search_worker.run_worker, args=(plan.study_name, settings)
    )
    process.start()
    study, _ = search.load_study(plan.study_name, settings)
    deadline = time.monotonic() + 120
    # Mid-trial: its parameters are sampled and its MLflow run exists.
    while not [t for t in study.get_trials(states=(TrialState.RUNNING,)) if t.user_attrs]:
        assert time.monotonic() < deadline and process.is_alive(), "no trial started"
        time.sleep(0.1)
    process.kill()
    process.join()
    (killed,) = study.get_trials(states=(TrialState.RUNNING,))

    time.sleep(settings.search.search_grace_s + 1)  # the dead worker's heartbeat goes stale
    assert search_worker.run_worker(plan.study_name, settings) >= 1

    trials = study.get_trials()
    assert trials[killed.number].state == TrialState.FAIL
    retries = [
        t
        for t in trials
        if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number
    ]
    assert len(retries) == 1
    assert retries[0].state in search.COUNTED_STATES
    assert retries[0].params == killed.params
    lost = MlflowClient(settings.mlflow.mlflow_tracking_uri).get_run(
        killed.user_attrs["mlflow_run_id"]
    )
    assert lost.info.status == "FAILED" and lost.data.tags["error"] == "worker lost"


def test_worker_refuses_rows_that_changed_since_the_plan(search_settings, raw_sample):
    plan = search.prepare_study(search_settings, _load(search_settings, raw_sample))
    with db.engine("clean", search_settings.databases).begin() as conn:
        conn.execute(
            sa.update(tables.clean.listings).values(price=tables.clean.listings.c.price + 1)
        )
    with pytest.raises(Conflict, match="changed since"):
        search_worker.run_worker(plan.study_name, search_settings)
    assert (
        optuna.load_study(
            study_name=plan.study_name, storage=search.storage(search_settings)
        ).trials
        == []
    )


def _slow_spaces(tmp_path, trees: int):
    return write_spaces(
        tmp_path / f"rf-{trees}",
        {
            "random_forest": "family: random_forest\n"
            f"params:\n  n_estimators: {{type: int, low: {trees}, high: {trees + 10}}}\n"
        },
    )


def test_a_trial_past_its_time_limit_is_stopped_and_recorded(search_settings, raw_sample, tmp_path):
    settings = search_settings.updated(
        search_spaces_dir=_slow_spaces(tmp_path, 3000),  # minutes per fold
        search_trials=2,
        search_trial_timeout_s=1.0,
    )
    plan = search.prepare_study(settings, _load(settings, raw_sample))

    assert search_worker.run_worker(plan.study_name, settings) == 2  # stopped trials count as spent

    study, _ = search.load_study(plan.study_name, settings)
    client = MlflowClient(settings.mlflow.mlflow_tracking_uri)
    for trial in study.trials:
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs[search_worker.STOPPED_ATTR] == search_worker.STOPPED_TIME_LIMIT
        run = client.get_run(trial.user_attrs[search.RUN_ID_ATTR])
        assert run.info.status == "KILLED"
        assert run.data.tags[search_worker.STOPPED_ATTR] == search_worker.STOPPED_TIME_LIMIT
        assert run.data.tags["optuna.trial_state"] == "PRUNED"
    # The stopped fits were killed, not left running: no process below the forkserver.
    servers = [p for p in psutil.Process().children() if "forkserver" in " ".join(p.cmdline())]
    assert servers and all(not s.children() for s in servers)


def test_trial_and_time_budgets_hold_across_worker_processes(search_settings, raw_sample, tmp_path):
    workers = 3
    ids = _load(search_settings, raw_sample)
    by_trials = search.prepare_study(search_settings.updated(search_trials=5), ids)
    search_worker.run_workers(by_trials.study_name, search_settings, workers)
    study, _ = search.load_study(by_trials.study_name, search_settings)
    assert 5 <= search.counted_trials(study) <= 5 + workers - 1

    timed = search_settings.updated(
        model_name="timed",
        search_spaces_dir=_slow_spaces(tmp_path, 60),  # about a second a trial
        search_timeout_s=4.0,
    )
    plan = search.prepare_study(timed, ids, n_trials=10_000)
    search_worker.run_workers(plan.study_name, timed, workers)  # the budget comes from the setting
    study, _ = search.load_study(plan.study_name, timed)
    trials = study.get_trials(states=search.COUNTED_STATES)
    first = min(t.datetime_start for t in trials)
    # A worker checks the shared deadline, then asks for a trial, whose start the storage records
    # a database round trip later (longer on a loaded machine): that much is not a late start.
    recorded_within_s = 1.0
    late = {
        t.number: round((t.datetime_start - first).total_seconds() - 4.0, 3)
        for t in trials
        if (t.datetime_start - first).total_seconds() > 4.0 + recorded_within_s
    }
    assert not late, f"trials started past the shared deadline (seconds late): {late}"
    ended_late = [t for t in trials if (t.datetime_complete - first).total_seconds() > 4.0]
    assert len(ended_late) <= workers  # at most the trial each worker was running
    assert len({t.user_attrs["worker"] for t in trials}) <= workers
    assert search_worker.run_worker(plan.study_name, timed) == 0  # the budget is spent for everyone
    line = progress.describe(study, 10_000, timed.search.search_timeout_s)
    assert line.startswith(f"trials {len(trials)}/10000, best RMSLE ")
    assert line.endswith(" 0m00s left")
    assert not progress.describe(study, len(trials), timed.search.search_timeout_s).endswith("left")
    # Each trial names the worker process (0, 1, 2) that ran it.
    by_worker = search.trials_by_worker(study)
    assert set(by_worker) <= {"0", "1", "2"} and sum(by_worker.values()) == len(trials)
    assert progress.describe_workers(study, workers).startswith(
        f"worker 0: {by_worker.get('0', 0)} "
    )
