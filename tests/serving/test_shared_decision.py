"""The alias decision names its registry: servers sharing a state folder with another registry's
leader (a leftover `tasador serve` configured with another MLflow address) do not follow it.

The "other leader" is the real thing as far as the state folder can tell: it holds
``<state_dir>/serving/watcher.lock`` and writes ``alias.json`` from a thread, as a leader does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pandas as pd

from serving.decision_file import MadeFor, SharedDecision, registry_address
from serving.hot_swap import ModelWatcher
from tasador.core.config import Settings
from tests.helpers.mlflow import register
from tests.helpers.serving import ready_version, running, wait_until


@contextmanager
def other_leader(
    settings: Settings, made_for: MadeFor, version: str | None, error: str | None
) -> Iterator[SharedDecision]:
    """A leader of ``settings``' state folder writing, every 0.1 s, a decision for ``made_for``."""
    shared = SharedDecision(settings.state_dir / "serving", made_for)
    assert shared.try_lead()
    stop = threading.Event()

    def lead() -> None:
        while not stop.wait(0.1):
            shared.write(error is None, version, error)

    thread = threading.Thread(target=lead, daemon=True)
    thread.start()
    try:
        yield shared
    finally:
        stop.set()
        thread.join(5)
        shared.release()


def serving_beside(
    settings: Settings, leader: MadeFor, decided: str | None, error: str | None, serves: str
) -> tuple[dict[str, Any], bool]:
    """A server on ``settings`` beside another process's leader writing a decision for
    ``leader``: its ``/ready`` once version ``serves`` answers, and whether it ever led."""
    with (
        other_leader(settings, leader, decided, error),
        running(settings) as (url, service),
    ):
        wait_until(lambda: ready_version(url) == serves, 60, f"version {serves} serves")
        ready: dict[str, Any] = httpx.get(f"{url}/ready").json()
        return ready, service.watcher.status.leader


def test_a_decision_made_for_another_registry_is_ignored_and_said(
    serving_settings: Settings, xgb_model: Any, clean_sample: pd.DataFrame
) -> None:
    served = register(serving_settings, xgb_model, clean_sample, family="xgboost")
    other = serving_settings.updated(
        mlflow_tracking_uri="http://other-mlflow.example:5000", model_name="another-model"
    )
    outage = "model registry unreachable: the other server's registry is down"
    # Following the other leader would leave this server unready ("registry unreachable").
    ready, led = serving_beside(
        serving_settings, MadeFor.of(other, "production"), None, outage, serves=served
    )

    assert not led  # the other server holds the lock throughout
    ours = registry_address(serving_settings.mlflow.mlflow_tracking_uri or "")
    said = ready["registry"]["ignored_decision"]
    assert said == (
        f"the alias decision in {serving_settings.state_dir / 'serving'} was made for "
        f"http://other-mlflow.example:5000 another-model@production, not this server's "
        f"{ours} {serving_settings.mlflow.model_name}@production"
    )
    assert ready["registry"]["reachable"] is True
    assert ready["registry"]["error"] is None  # the other registry's error is not ours
    assert "down" not in json.dumps(ready)


def test_a_decision_for_this_registry_is_followed(
    serving_settings: Settings, xgb_model: Any, lgbm_model: Any, clean_sample: pd.DataFrame
) -> None:
    decided = register(serving_settings, xgb_model, clean_sample, family="xgboost")
    register(serving_settings, lgbm_model, clean_sample, family="lightgbm")  # the alias moves
    # The same registry written another way: compared in a normal form.
    uri = serving_settings.mlflow.mlflow_tracking_uri or ""
    same = serving_settings.updated(mlflow_tracking_uri=f"HTTP{uri.removeprefix('http')}/")
    # The decision, not this worker's own look at the alias (the newer version): it follows.
    ready, led = serving_beside(
        serving_settings, MadeFor.of(same, "production"), decided, None, serves=decided
    )

    assert not led
    assert ready["registry"]["ignored_decision"] is None
    assert ready["registry"]["alias_version"] == decided


def test_the_written_decision_names_registry_model_and_alias_without_the_password(
    settings: Settings,
) -> None:
    settings = settings.updated(
        mlflow_tracking_uri="HTTP://alice:s3cret@127.0.0.1:9/mlflow/?token=t0ken",  # nobody there
        model_name="realtor-named",
    )
    watcher = ModelWatcher(settings)
    decision_file = settings.state_dir / "serving" / "alias.json"
    watcher.start()
    try:
        wait_until(decision_file.exists, 30, "the leader shares its decision")
    finally:
        watcher.stop()

    text = decision_file.read_text()
    written = json.loads(text)
    assert written["tracking_uri"] == "http://127.0.0.1:9/mlflow"
    assert (written["model_name"], written["alias"]) == ("realtor-named", "production")
    assert written["reachable"] is False
    # Nor in the error, which quotes the URI the client called.
    assert "http://127.0.0.1:9/mlflow" in written["error"]
    for secret in ("alice:", "s3cret", "t0ken"):
        assert secret not in text
    # What a follower of this server reads is its own registry's decision.
    decision = watcher.shared.read()
    assert decision is not None and watcher.shared.foreign(decision) is None
