"""Rollback of the production alias against the real registry and CLEAN: one move under the
promotion lock, an audit row with the reason, and later decisions comparing with what was
restored."""

from __future__ import annotations

from typing import Any

import pytest

from experiments import promotions
from experiments.rollback import rollback, rollback_target
from tasador.core.config import Settings
from tasador.core.errors import BadInput, Conflict, NotFound
from tests.helpers.candidates import Candidates


def moves(candidates: Candidates) -> list[tuple[int, int | None, str]]:
    history = promotions.alias_history(candidates.engine, candidates.settings.mlflow.model_name)
    return [(m.version, m.previous_version, m.cause) for m in history]


def test_rollback_restores_the_previous_version_and_records_why(promoted_twice: Candidates):
    c = promoted_twice
    assert rollback_target(c.settings) == 1
    move = rollback(c.settings, "v2 overprices Florida")
    assert (move.version, move.previous_version, move.cause) == (1, 2, "rollback")
    assert c.production() == 1
    assert moves(c) == [(1, None, "promotion"), (2, 1, "promotion"), (1, 2, "rollback")]
    assert promotions.alias_history(c.engine, c.settings.mlflow.model_name)[-1].reason == (
        "v2 overprices Florida"
    )
    last = promotions.alias_history(c.engine, c.settings.mlflow.model_name)[-1].moved_at
    assert promotions.production_at(c.engine, c.settings.mlflow.model_name, last) == 1

    # Without --to, a second rollback undoes the first; a retried one with a fixed target
    # finds it done and moves nothing.
    assert rollback(c.settings, "false alarm").version == 2
    again = rollback(c.settings, "false alarm", to_version=2, repeat_ok=True)
    assert again.version == 2 and len(moves(c)) == 4
    with pytest.raises(Conflict, match="already"):
        rollback(c.settings, "false alarm", to_version=2)


def test_a_decision_after_a_rollback_compares_with_the_restored_version(
    promoted_twice: Candidates,
):
    c = promoted_twice
    rollback(c.settings, "bad release", to_version=1)
    third, third_model = c.register("ridge", {"alpha": 1e5})
    outcome = c.challenge(third, third_model)
    assert outcome.decision.previous_version == 1  # not 2, which the alias no longer names


def test_refused_rollbacks_change_nothing(promoted_twice: Candidates):
    c = promoted_twice
    with pytest.raises(NotFound, match="no version 99"):
        rollback(c.settings, "typo", to_version=99)
    with pytest.raises(BadInput, match="reason"):
        rollback(c.settings, "  ")

    def failing_move(version: int) -> None:
        raise ConnectionError("registry went away mid-rollback")

    with pytest.raises(ConnectionError):
        promotions.roll_back(
            c.engine,
            model_name=c.settings.mlflow.model_name,
            alias="production",
            to_version=1,
            reason="registry down",
            current=c.production,
            exists=lambda v: True,
            move_alias=failing_move,
        )
    assert c.production() == 2 and len(moves(c)) == 2  # no row without the move


def test_nothing_to_roll_back_before_a_second_promotion(search_settings: Settings, raw_sample: Any):
    c = Candidates(search_settings, raw_sample, [800, 600])
    with pytest.raises(Conflict, match="points at no version"):
        rollback(c.settings, "too early")
    first, model = c.register("ridge", {"alpha": 1.0})
    c.challenge(first, model)
    with pytest.raises(Conflict, match="nothing to go back to"):
        rollback(c.settings, "too early")
