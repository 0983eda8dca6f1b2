"""The shadow-row gate: a challenger that wins on the holdout waits for live traffic, says so,
and is promoted by the re-check once serving has scored enough rows next to production."""

from __future__ import annotations

import pytest

from experiments import promotions, registry, shadow_gate
from tasador.core.errors import Conflict
from tests.helpers.candidates import Candidates
from tests.helpers.shadow import shadow


def test_waits_then_promoted_by_the_recheck_once_it_has_the_rows(waiting: Candidates) -> None:
    c = waiting
    shadow(c.settings, 2)
    shadow(c.settings, 5, production="7")  # next to another production version: not counted
    with pytest.raises(Conflict, match="waiting for 3 shadow rows, has 2"):
        shadow_gate.recheck(c.settings)
    assert c.production() == 1 and not c.audit()[-1].promoted  # nothing changed

    shadow(c.settings, 1)
    decision = shadow_gate.recheck(c.settings)
    assert decision.promoted and decision.challenger_version == 2 and c.production() == 2
    assert "promoted after shadow traffic" in decision.summary
    assert "3 live rows" in decision.summary and "100.0% priced within ±10%" in decision.summary
    assert [(p.challenger_version, p.promoted) for p in c.audit()] == [(1, True), (2, True)]
    moves = promotions.alias_history(c.engine, c.settings.mlflow.model_name)
    assert [(m.version, m.previous_version, m.cause) for m in moves] == [
        (1, None, "promotion"),
        (2, 1, "promotion"),
    ]
    tags = c.client.get_model_version(c.settings.mlflow.model_name, "2").tags
    assert tags[registry.PROMOTED_TAG] == "True" and "shadow traffic" in tags["decision"]
    assert shadow_gate.recheck(c.settings).id == decision.id  # again: nothing moves
    assert len(promotions.alias_history(c.engine, c.settings.mlflow.model_name)) == 2


def test_no_promotion_when_production_moved_meanwhile(waiting: Candidates) -> None:
    c = waiting
    shadow(c.settings, 3)
    weaker, _ = c.register("ridge", {"alpha": 1e7})
    c.client.set_registered_model_alias(c.settings.mlflow.model_name, "production", str(weaker))
    with pytest.raises(Conflict, match=f"version {weaker} serves now"):
        shadow_gate.recheck(c.settings)
    assert c.production() == weaker and not c.audit()[-1].promoted  # nothing changed
