#!/usr/bin/env python3
"""The stack's distributed path, checked end to end against running Airflow components.

Two loops as the stack runs them, each: an ingestion DAG run created through Airflow's REST API
-> the retrain Asset event that schedules the training DAG -> its mapped search tasks on the
``search`` queue within the ``tasador_search`` pool's slots -> champion/challenger and the
production alias in MLflow. In the second loop the search worker is killed (SIGKILL) mid-study
and restarted: Airflow retries its tasks once their heartbeats stop, the Optuna heartbeat fails
the dead trial and enqueues it again, and the study still completes. After each loop: one
registered version and one promotion verdict per study, every CLEAN row stored once, no trial
left running or waiting, the trial budget spent and not overrun past one trial per worker.

tests/deploy/test_distributed.py runs it on the components started as local processes; the
image workflow's smoke job runs it against the compose stack (``python docker/distributed_check.py``
in the project's environment), configured by these variables:

- ``CHECK_AIRFLOW_URL``, ``AIRFLOW_ADMIN_USER``, ``AIRFLOW_ADMIN_PASSWORD``: the REST API;
- ``CHECK_MLFLOW_URL``, ``MLFLOW_ADMIN_USER``, ``MLFLOW_ADMIN_PASSWORD``: the tracking server;
- ``CHECK_CLEAN_SQL``, ``CHECK_OPTUNA_SQL``: a command that runs the SQL given as its last
  argument on CLEAN / the Optuna storage and prints one number (``docker compose exec -T
  postgres-clean psql -U tasador -d clean -Atc``);
- ``CHECK_KILL_SEARCH_WORKER``, ``CHECK_RESTART_SEARCH_WORKER``: shell commands;
- ``CHECK_TIMEOUT_S`` (1800): the wait for each DAG run; the ``TASADOR_*`` settings (model name,
  trial budget) as the stack has them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from tasador.core import lineage
from tasador.core.config import get_settings
from tasador.loop.dag_defaults import SEARCH_POOL, SEARCH_QUEUE

INGESTION, TRAINING = "tasador_ingestion", "tasador_training"
POLL_S = 3.0
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # study names are inlined into SQL


@dataclass
class Stack:
    """How to reach a running stack, and how to kill and restart its search worker."""

    airflow_url: str
    airflow_login: tuple[str, str]
    mlflow_url: str
    mlflow_login: tuple[str, str] | None
    model_name: str
    trials: int  # the study's trial budget (TASADOR_SEARCH_TRIALS as the stack has it)
    clean_sql: Callable[[str], int]
    optuna_sql: Callable[[str], int]
    kill_search_worker: Callable[[], None]
    restart_search_worker: Callable[[], None]
    timeout_s: float = 1800.0
    echo: Callable[[str], None] = print


@dataclass
class Loop:
    """What one loop did: its runs, the study, the version and how the search tasks ran."""

    ingestion_run: str
    training_run: str
    study_name: str
    result: dict[str, Any]
    search_tries: list[int] = field(default_factory=list)
    seconds: float = 0.0


class Airflow:
    """Airflow's REST API (v2) with the admin's token."""

    def __init__(self, url: str, login: tuple[str, str], timeout_s: float) -> None:
        self.url = url.rstrip("/")
        answer = _retrying(
            lambda: httpx.post(
                f"{self.url}/auth/token",
                json={"username": login[0], "password": login[1]},
                timeout=60,
            ),
            timeout_s,
            "the Airflow API server to issue a token",
        )
        self.headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(
            method, f"{self.url}/api/v2/{path}", headers=self.headers, timeout=60, **kwargs
        )
        answer.raise_for_status()
        return answer.json()

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        run = self.call("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"dags/{dag_id}/dagRuns/{run_id}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self.call("GET", path, params={"limit": 100})["task_instances"])

    def returned(self, dag_id: str, run_id: str, task_id: str) -> Any:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        return self.call("GET", path, params={"deserialize": True, "stringify": False})["value"]

    def wait_run(self, dag_id: str, run_id: str, timeout_s: float) -> None:
        """Until the run succeeds; fails with its task states when it fails or stalls."""
        deadline = time.monotonic() + timeout_s
        while (state := self.run(dag_id, run_id)["state"]) != "success":
            if state == "failed" or time.monotonic() > deadline:
                states = {
                    (t["task_id"], t["map_index"]): (t["state"], t["try_number"])
                    for t in self.task_instances(dag_id, run_id)
                }
                raise AssertionError(
                    f"{dag_id} run {run_id} is {state} after {timeout_s:.0f}s or less "
                    f"(task: (state, try)): {states}"
                )
            time.sleep(POLL_S)


def _retrying(call: Callable[[], httpx.Response], timeout_s: float, what: str) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = call()
            if answer.status_code < 300:
                return answer
            problem = f"{answer.status_code}: {answer.text[:300]}"
        except httpx.TransportError as exc:
            problem = repr(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}: {problem}")
        time.sleep(POLL_S)


def _until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(POLL_S)
    return found


def _trials(stack: Stack, study_name: str, states: str) -> int:
    """Trials of the study in ``states`` (a SQL list of Optuna's state names)."""
    assert _SAFE_NAME.match(study_name), study_name
    return stack.optuna_sql(
        "SELECT count(*) FROM trials JOIN studies USING (study_id) "
        f"WHERE study_name = '{study_name}' AND state IN ({states})"
    )


COUNTED = "'COMPLETE', 'PRUNED'"


def run_loop(api: Airflow, stack: Stack, kill_mid_study: bool) -> Loop:
    """One ingestion run through the REST API, then the training run its Asset event schedules."""
    started = time.monotonic()
    before = {r["dag_run_id"] for r in api.runs(TRAINING)}
    # The first batch always trains; later ones may not, so the run asks for a retraining.
    ingestion = api.trigger(INGESTION, {"force_retrain": True})
    stack.echo(f"ingestion run {ingestion} created through the REST API")
    api.wait_run(INGESTION, ingestion, stack.timeout_s)
    decision = api.returned(INGESTION, ingestion, "decide")
    assert decision["verdict"] == "retrain", decision

    def scheduled() -> dict[str, Any] | None:
        new = [r for r in api.runs(TRAINING) if r["dag_run_id"] not in before]
        return new[0] if new else None

    training = _until(scheduled, stack.timeout_s, "the retrain Asset to schedule training")
    assert training["run_type"] == "asset_triggered", training
    run_id = training["dag_run_id"]
    stack.echo(f"training run {run_id} scheduled by the retrain Asset event")

    def planned() -> str | None:
        states = {t["task_id"]: t["state"] for t in api.task_instances(TRAINING, run_id)}
        assert states.get("plan") not in ("failed", "upstream_failed"), states
        if states.get("plan") != "success":
            return None
        return str(api.returned(TRAINING, run_id, "plan")["study_name"])

    study = _until(planned, stack.timeout_s, "the training run to plan its study")
    if kill_mid_study:
        _kill_mid_study(stack, study)
    api.wait_run(TRAINING, run_id, stack.timeout_s)
    result = api.returned(TRAINING, run_id, "champion_challenger")
    loop = Loop(ingestion, run_id, study, result, seconds=time.monotonic() - started)
    _check_routing(api, stack, loop)
    _check_stored_once(stack, loop)
    return loop


def _kill_mid_study(stack: Stack, study: str) -> None:
    """SIGKILL the search worker once a trial has finished and another runs; restart it."""
    _until(
        lambda: _trials(stack, study, COUNTED) >= 1 and _trials(stack, study, "'RUNNING'") >= 1,
        stack.timeout_s,
        f"study {study} to finish a trial and run another",
    )
    finished = _trials(stack, study, COUNTED)
    assert finished < stack.trials, f"study {study} ended before the kill ({finished} trials)"
    stack.echo(f"killing the search worker: {finished} of {stack.trials} trials finished")
    stack.kill_search_worker()
    stack.restart_search_worker()
    stack.echo("search worker restarted")


def _check_routing(api: Airflow, stack: Stack, loop: Loop) -> None:
    """The search tasks ran on the search queue and pool, never more at once than its slots;
    every other task on the default queue."""
    slots = int(api.call("GET", f"pools/{SEARCH_POOL}")["slots"])
    tasks = api.task_instances(TRAINING, loop.training_run)
    search = [t for t in tasks if t["task_id"] == "search"]
    assert search and all(t["state"] == "success" for t in search), search
    assert {(t["queue"], t["pool"]) for t in search} == {(SEARCH_QUEUE, SEARCH_POOL)}, search
    others = [*api.task_instances(INGESTION, loop.ingestion_run), *tasks]
    assert {t["queue"] for t in others if t["task_id"] != "search"} == {"default"}, others
    spans = [(_time(t["start_date"]), _time(t["end_date"])) for t in search]
    most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert most <= slots, f"{most} search tasks at once in a pool of {slots} slots"
    loop.search_tries = [int(t["try_number"]) for t in search]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _check_stored_once(stack: Stack, loop: Loop) -> None:
    """One version and one promotion verdict for the study, CLEAN rows once, trials consistent."""
    study, workers = loop.study_name, len(loop.search_tries)
    versions = [
        v
        for v in _mlflow(stack, "model-versions/search", filter=f"name = '{stack.model_name}'").get(
            "model_versions", []
        )
        if {t["key"]: t["value"] for t in v.get("tags", [])}.get(lineage.STUDY_NAME) == study
    ]
    assert [v["version"] for v in versions] == [str(loop.result["version"])], versions
    alias = _mlflow(stack, "registered-models/alias", name=stack.model_name, alias="production")
    if loop.result["promoted"]:
        assert alias["model_version"]["version"] == str(loop.result["version"]), alias
    verdicts = stack.clean_sql(
        f"SELECT count(*) FROM model_promotions WHERE study_name = '{study}'"
    )
    assert verdicts == 1, f"{verdicts} promotion verdicts for {study}"
    stored = stack.clean_sql("SELECT count(*) FROM listings")
    cleaned = stack.clean_sql("SELECT coalesce(sum(rows_out), 0) FROM cleaned_batches")
    assert stored == cleaned, f"CLEAN holds {stored} listings, its batches report {cleaned}"
    left = _trials(stack, study, "'RUNNING', 'WAITING'")
    assert left == 0, f"{left} trials of {study} still running or waiting"
    counted = _trials(stack, study, COUNTED)
    # A worker starts no trial once the budget is spent: at most one overrun trial each.
    assert stack.trials <= counted <= stack.trials + workers, (counted, stack.trials, workers)


def _mlflow(stack: Stack, path: str, **params: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{stack.mlflow_url.rstrip('/')}/api/2.0/mlflow/{path}",
        params=params,
        auth=stack.mlflow_login,
        timeout=60,
    )
    answer.raise_for_status()
    return dict(answer.json())


def check_recovery(stack: Stack, loop: Loop) -> int:
    """After the kill: a search task ran again, and the dead trial was failed and re-run.
    Returns how many trials the kill failed."""
    assert max(loop.search_tries) >= 2, f"no search task was retried: tries {loop.search_tries}"
    failed = _trials(stack, loop.study_name, "'FAIL'")
    assert failed >= 1, f"no trial of {loop.study_name} was failed by its stale heartbeat"
    assert _SAFE_NAME.match(loop.study_name)
    retried = stack.optuna_sql(
        "SELECT count(*) FROM trial_system_attributes JOIN trials USING (trial_id) "
        f"JOIN studies USING (study_id) WHERE study_name = '{loop.study_name}' "
        f"AND key = 'failed_trial' AND state IN ({COUNTED})"
    )
    assert retried >= failed, f"{failed} trials failed with the worker, {retried} re-run"
    return failed


def check(stack: Stack) -> list[Loop]:
    """Both loops and their checks; raises AssertionError naming what went wrong."""
    api = Airflow(stack.airflow_url, stack.airflow_login, stack.timeout_s)
    for dag_id in (INGESTION, TRAINING):
        _until(
            lambda dag_id=dag_id: api.call("GET", "dags", params={"dag_id_pattern": dag_id})[
                "total_entries"
            ],
            stack.timeout_s,
            f"the DAG processor to register {dag_id}",
        )
        api.call("PATCH", f"dags/{dag_id}", json={"is_paused": False})
    first = run_loop(api, stack, kill_mid_study=False)
    stack.echo(f"loop 1: {first.result['summary']} ({first.seconds:.0f}s)")
    second = run_loop(api, stack, kill_mid_study=True)
    failed = check_recovery(stack, second)
    stack.echo(
        f"loop 2 with the search worker killed: {failed} trial(s) failed and re-run, search "
        f"tries {second.search_tries}, version {second.result['version']} ({second.seconds:.0f}s)"
    )
    return [first, second]


def sql_command(variable: str) -> Callable[[str], int]:
    """The SQL runner a variable names: its command with the query as the last argument."""
    prefix = shlex.split(os.environ[variable])
    return lambda sql: int(
        subprocess.run([*prefix, sql], check=True, capture_output=True, text=True).stdout.strip()
    )


def _shell(variable: str) -> Callable[[], None]:
    command = os.environ[variable]
    return lambda: subprocess.run(command, shell=True, check=True)


def main() -> int:
    env, settings = os.environ, get_settings()
    mlflow_user = env.get("MLFLOW_ADMIN_USER")
    stack = Stack(
        airflow_url=env.get("CHECK_AIRFLOW_URL", "http://127.0.0.1:8080"),
        airflow_login=(env["AIRFLOW_ADMIN_USER"], env["AIRFLOW_ADMIN_PASSWORD"]),
        mlflow_url=env.get("CHECK_MLFLOW_URL", "http://127.0.0.1:5000"),
        mlflow_login=(mlflow_user, env["MLFLOW_ADMIN_PASSWORD"]) if mlflow_user else None,
        model_name=settings.mlflow.model_name,
        trials=settings.search.search_trials,
        clean_sql=sql_command("CHECK_CLEAN_SQL"),
        optuna_sql=sql_command("CHECK_OPTUNA_SQL"),
        kill_search_worker=_shell("CHECK_KILL_SEARCH_WORKER"),
        restart_search_worker=_shell("CHECK_RESTART_SEARCH_WORKER"),
        timeout_s=float(env.get("CHECK_TIMEOUT_S", "1800")),
    )
    check(stack)
    print("distributed path: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
