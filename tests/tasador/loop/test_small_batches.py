"""Empty and tiny batches: a stored skip that says why, never the baseline, never trained on."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from experiments import study as search
from tasador.cli import app
from tasador.core import evidence as ev
from tasador.core.config import Settings, get_settings, settings_env
from tasador.core.errors import BadInput, NotFound
from tasador.loop import decide, training
from tests.helpers.search import load_batches


@pytest.fixture
def batches(
    settings: Settings,
    mlflow_server: str,
    make_database: Callable[[str], str],
    raw_sample: pd.DataFrame,
) -> tuple[Settings, list[int]]:
    """CLEAN batches: one whose every row cleaning drops, two normal ones, one of ten rows."""
    tuned = settings.updated(
        mlflow_tracking_uri=mlflow_server,
        model_name=f"small-{uuid.uuid4().hex[:8]}",
        experiment_name=f"small-{uuid.uuid4().hex[:8]}",
        optuna_storage_url=SecretStr(make_database("optuna")),
    )
    dropped = raw_sample.iloc[:300].assign(price="1")  # below the price floor: every row goes
    frame = pd.concat([dropped, raw_sample.iloc[300:1510]], ignore_index=True)
    return tuned, load_batches(tuned, frame, [300, 600, 600, 10])


def _decided(settings: Settings, batch_id: int, force: bool = False) -> tuple[Any, ev.Evidence]:
    decision = decide.decide_batch(settings, batch_id, force)
    return decision, ev.Evidence.model_validate(decision.evidence)


def test_an_empty_first_batch_is_skipped_and_the_next_is_the_baseline(
    batches: tuple[Settings, list[int]],
) -> None:
    settings, (empty, first, second, tiny) = batches
    skipped, evidence = _decided(settings, empty)
    assert skipped.verdict == "skip" and evidence.basis == "too_few_rows"
    assert evidence.batch.rows_out == 0
    assert "Too few rows" in skipped.reason and "fewer than the 50 clean rows" in skipped.reason
    assert "0 of 300 received rows survived cleaning" in skipped.reason

    baseline, evidence = _decided(settings, first)
    assert baseline.verdict == "retrain" and evidence.basis == "baseline"

    compared, evidence = _decided(settings, second)
    assert evidence.basis == "compared"
    assert evidence.reference is not None and evidence.reference.batch_ids == [first]

    small, evidence = _decided(settings, tiny)
    assert small.verdict == "skip" and evidence.basis == "too_few_rows"
    assert evidence.batch.rows_out < 50 and "Too few rows" in small.reason

    # What the retrainings of these decisions train on: never a batch with too few rows.
    assert training.training_batches(settings, baseline.id) == [first]
    assert training.training_batches(settings, compared.id) == [first, second]
    assert training.training_batches(settings, None) == [first, second]
    with pytest.raises(NotFound, match="nothing to train on"):
        training.training_batches(settings, skipped.id)
    plan = training.plan_retraining(settings, baseline.id, trials=1)
    assert plan.batch_ids == [first] and plan.decision_id == baseline.id


def test_forcing_a_tiny_batch_trains_on_the_batches_with_enough_rows(
    batches: tuple[Settings, list[int]],
) -> None:
    settings, (_, first, second, tiny) = batches
    forced, evidence = _decided(settings, tiny, force=True)
    assert forced.verdict == "retrain" and evidence.basis == "too_few_rows" and evidence.forced
    assert forced.reason.startswith("Retrain (forced by the operator). Too few rows")
    assert "leaves it out" in forced.reason
    assert training.training_batches(settings, forced.id) == [first, second]


def test_forcing_with_nothing_to_train_on_says_why(
    batches: tuple[Settings, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, (empty, *_) = batches
    with pytest.raises(BadInput, match="nothing to train on"):
        decide.decide_batch(settings, empty, force=True)
    skipped = decide.decide_batch(settings, empty)  # the refusal stored nothing in its place
    assert skipped.verdict == "skip"
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["decide", "--batch", str(empty), "--force"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == BadInput.exit_code, out.output
    assert "cannot force a retrain" in out.output and "TASADOR_DECIDE_MIN_CLEAN_ROWS" in out.output


def test_a_retraining_never_falls_back_to_every_batch(
    batches: tuple[Settings, list[int]],
) -> None:
    settings, (empty, *_) = batches
    skipped = decide.decide_batch(settings, empty)
    with pytest.raises(NotFound, match=f"up to batch {empty}"):
        training.plan_retraining(settings, skipped.id)
    with pytest.raises(BadInput, match="at least one batch"):
        search.prepare_study(settings, [])
