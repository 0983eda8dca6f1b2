"""Promotion on live traffic: the shadow-row gate, and the re-check that ends a wait.

With ``promotion_min_shadow_rows`` > 0, a challenger that beats production on the holdout is not
promoted until serving has priced at least that many live rows with it next to that production
version (serving.shadow writes them to RAW ``shadow_predictions``). Its verdict says so ("waiting
for N shadow rows, has M"); it stays registered and ``@challenger`` stays on it, so serving
shadows it from the next poll on.

Later, ``tasador promote --challenger`` (:func:`recheck`) looks again, under the promotion lock:
when production is still the version the challenger beat and the shadow rows are now enough, the
stored verdict becomes a promotion, the alias moves and the move is recorded (``alias_moves``);
otherwise it says what it still waits for and nothing changes. A newer candidate takes the
``challenger`` alias over; a waiting challenger whose production changed meanwhile (a rollback,
another promotion) is not promoted: the next training run compares a new candidate with it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from experiments import promotions, registry, report
from tasador.core import db, shadow_store
from tasador.core.config import Settings
from tasador.core.errors import Conflict, NotFound
from tasador.core.names import REPORT_FILE


def waiting(settings: Settings, challenger: int, production: int) -> str | None:
    """What the challenger still waits for ("waiting for N shadow rows, has M"); None: nothing
    (the gate is off, or it has enough rows next to ``production``)."""
    needed = settings.promotion.promotion_min_shadow_rows
    if needed <= 0:
        return None
    has = shadow_store.count(
        db.engine("raw", settings.databases),
        settings.mlflow.model_name,
        str(challenger),
        str(production),
    )
    return None if has >= needed else f"waiting for {needed:,} shadow rows, has {has:,}"


def waiting_summary(summary: str, waiting: str) -> str:
    """The verdict of a challenger that won on the holdout but waits for live traffic."""
    held = summary.replace(" promoted:", " not promoted yet:", 1)
    return (
        f"{held} It beats production on the holdout but must also price live traffic next to "
        f"it first: {waiting}. The alias `{registry.CHALLENGER_ALIAS}` stays on it; "
        "`tasador promote --challenger` promotes it once it has them."
    )


def recheck(settings: Settings) -> promotions.Promotion:
    """Promote the ``@challenger`` version if it only waited for shadow rows and has them now.

    Raises Conflict (nothing changes) when it still waits, lost on the holdout, or production
    moved since its verdict; NotFound when there is no challenger or no verdict yet."""
    client = registry.connect(settings)
    found = registry.aliased_version(client, settings.mlflow, registry.CHALLENGER_ALIAS)
    if found is None:
        raise NotFound(f"{settings.mlflow.model_name}@{registry.CHALLENGER_ALIAS} names no version")
    version = int(found.version)

    def current() -> int | None:
        serving = registry.production_version(client, settings)
        return None if serving is None else int(serving.version)

    def check(stored: promotions.Promotion, serving: int | None) -> str:
        beaten = stored.previous_version
        if beaten is None or not stored.won_on_holdout:
            raise Conflict(f"version {version} does not wait for shadow rows: {stored.summary}")
        if serving != beaten:
            raise Conflict(
                f"version {version} beat production version {beaten} on the holdout, but "
                f"version {serving} serves now: a new training run compares them again"
            )
        still = waiting(settings, version, beaten)
        if still is not None:
            raise Conflict(f"version {version} is not promoted yet: {still}")
        live = shadow_store.disagreement(
            db.engine("raw", settings.databases),
            settings.mlflow.model_name,
            str(version),
            str(beaten),
        )
        return (
            f"Version {version} promoted after shadow traffic: holdout RMSLE "
            f"{stored.challenger_rmsle:.4f} vs {stored.previous_rmsle:.4f} for production version "
            f"{beaten} (required {stored.margin:.1%} better), and {live.sentence()}"
        )

    decision = promotions.confirm(
        db.engine("clean", settings.databases),
        model_name=settings.mlflow.model_name,
        challenger_version=version,
        current=current,
        check=check,
        move_alias=lambda: registry.set_production(client, settings.mlflow, version),
        alias=settings.mlflow.production_alias,
    )
    _rewrite_report(client, settings, found, str(decision.previous_version))
    for key, value in {
        registry.PROMOTED_TAG: True,
        registry.DECIDED_AT_TAG: decision.decided_at.isoformat(),
        registry.PROMOTION_VERDICT_TAG: decision.summary,
    }.items():
        client.set_model_version_tag(settings.mlflow.model_name, str(version), key, str(value))
    return decision


def _rewrite_report(
    client: MlflowClient, settings: Settings, version: ModelVersion, production: str
) -> None:
    """The version's model-change report, its shadow section written again with the rows
    that promoted it (on the version's run and its study's parent run)."""
    if not version.run_id:
        return
    run = client.get_run(version.run_id)
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(version.run_id, REPORT_FILE, folder)
        except MlflowException:
            return  # no report logged (a version registered outside a training run)
        text = Path(path).read_text()
    live = shadow_store.disagreement(
        db.engine("raw", settings.databases),
        settings.mlflow.model_name,
        str(version.version),
        production,
    )
    updated = report.with_shadow_section(text, report.shadow_section(live))
    parent = run.data.tags.get("mlflow.parentRunId")
    for run_id in (version.run_id, *([parent] if parent else [])):
        client.log_text(run_id, updated, REPORT_FILE)
