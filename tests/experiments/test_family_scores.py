"""Each family's best trial gets a holdout score after its study (the leaderboard's rows)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from experiments import champion, family_scores, search_worker
from experiments import study as search
from tasador.core.names import HOLDOUT_PRIMARY
from tests.helpers.search import load_batches


def test_every_familys_best_trial_is_scored_on_the_shared_holdout_once(search_settings, raw_sample):
    settings = search_settings
    ids = load_batches(settings, raw_sample.iloc[:1400], [800, 600])
    plan = search.prepare_study(settings, ids)
    search_worker.run_worker(plan.study_name, settings)
    result = champion.finish_study(plan.study_name, settings)

    study, _ = search.load_study(plan.study_name, settings)
    bests = family_scores.family_bests(study)
    assert len(bests) >= 2  # the plan's seed makes this one-worker study repeat
    client = MlflowClient(settings.mlflow.mlflow_tracking_uri)
    scored = {}
    for family, trial in bests.items():
        run = client.get_run(trial.user_attrs[search.RUN_ID_ATTR])
        scored[family] = run.data.metrics[HOLDOUT_PRIMARY]
        assert 0 < scored[family] < 5, family
    # The challenger's trial carries the registered refit's figure, not a second fit's.
    assert scored[result.challenger.family] == pytest.approx(result.challenger.metrics["rmsle"])

    champion.finish_study(plan.study_name, settings)  # re-running logs nothing twice
    for trial in bests.values():
        history = client.get_metric_history(trial.user_attrs[search.RUN_ID_ATTR], HOLDOUT_PRIMARY)
        assert len(history) == 1
