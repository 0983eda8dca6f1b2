"""Retrain or skip: judge a cleaned batch against the data the production model learned from.

**Reference.** The training rows (``is_holdout`` false) of the batches recorded in the production
model version's ``batch_ids`` tag (``models:/<model_name>@<production_alias>``). Before any model
exists, the earliest cleaned batch with enough rows is the baseline: deciding on it always says
*retrain*, and later batches are compared with it. Only rows that survived cleaning are judged.

**Too few rows.** A batch with fewer than ``decide_min_clean_rows`` [50] clean rows (or without
a training or a holdout row) gets a stored *skip* that says so, is never the baseline and is left
out of every retraining: on so few rows drift cannot be told from noise, and an empty baseline
would make every later decision fail. Forcing it retrains on the earlier batches with enough
rows; with none, forcing is refused (BadInput) with the reason.

**Evidence** (thresholds are settings, env ``TASADOR_DRIFT_*``; defaults in brackets):

- *Feature shift*, for bed, bath, acre_lot, house_size, prev_sold_date (numeric) and status,
  city, state, zip_code (categorical). A feature *moved* when the change is both large and real:
  PSI >= ``drift_psi_threshold`` [0.2, the usual "significant shift" mark] with the chi-square
  test on the same buckets rejecting at ``drift_p_value`` [0.01]; or, for numeric features, a KS
  statistic D >= ``drift_ks_min_statistic`` [0.15] with KS rejecting at the same level. A p-value
  alone is never enough: with 100k rows any wiggle is "significant", so an effect size must
  clear its bar too, while the test keeps small batches from raising alarms out of noise.
  Statistics compare the values present. More missing cells are a data-quality matter, not a
  shift: cleaning blanks impossible and mistyped values, so a dirty feed arrives as extra blanks,
  and retraining would not make them go away. The reason still mentions a missing share that
  changed; if the blanks hurt predictions, the model check below catches it.
- *Target shift*: the same rule applied to price.
- *Unseen categories*, per categorical column: the share of batch rows whose value training never
  saw, beyond the share chance alone explains (Good-Turing, see ``tasador.core.drift``), must stay
  under ``drift_unseen_share`` [0.05, i.e. five percentage points].
- *Model error*: the production model's RMSLE on the batch (up to ``drift_model_rows`` [20,000]
  rows) over its own holdout RMSLE (the run metric ``holdout_rmsle``; computed on the reference's
  holdout rows when the run lacks it) must stay under ``drift_model_error_ratio`` [1.25]. This is
  the strongest evidence: a model that still predicts well need not change. A model whose
  output is not finite (NaN or infinite prices, on the batch or its own holdout) fires the check:
  it is broken, and there is no ratio to compare.

*Live traffic* (cited, not a check): when a live drift check (``tasador.loop.monitor``) raised an
alarm since the previous decision, the newest such check is part of the evidence and the reason
says "the live traffic moved: ...". It does not decide the verdict: retraining learns from
batches, so only a batch that moved too can bring what the live traffic shows.

Distribution statistics use at most ``drift_sample_rows`` [50,000] rows per side; they are plain
scipy/numpy (``tasador.core.drift`` says why not Evidently). brokered_by and street are identifiers,
not features, and are not compared.

**Verdict.** Retrain when any check fires (or the operator forces it); otherwise skip. New rows
by themselves never trigger a retrain. The reason is a paragraph written from the evidence: which
checks fired, by how much, against which limits; a skip says what was checked and how close it
came. The decision is stored once per batch (``decisions_store``); deciding again returns
the stored decision unless ``force`` is set, which recomputes the evidence and retrains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

import sqlalchemy as sa

from experiments import data, registry
from tasador.core import clean_store, db, decisions_store, lineage, live_drift_store, tables
from tasador.core.config import Settings
from tasador.core.decisions_store import Decision
from tasador.core.errors import BadInput, Conflict, NotFound
from tasador.core.evidence import (
    BatchInfo,
    Evidence,
    Predictor,
    ReferenceInfo,
    Thresholds,
    compare,
    model_check,
    model_error,
    verdict_of,
)
from tasador.core.names import HOLDOUT_PRIMARY
from tasador.core.narrative import explain
from tasador.core.timings import step


@dataclass(frozen=True)
class ProductionLineage:
    """The model version the production alias points at and the batches it was trained on."""

    version: str
    batch_ids: list[int]
    holdout_rmsle: float | None  # the run metric, when the run logged it


@dataclass(frozen=True)
class ProductionModel(ProductionLineage):
    """The production version's lineage and the model itself."""

    model: Predictor


def production_lineage(settings: Settings) -> ProductionLineage | None:
    """The production version and its training batches (the model is not loaded), or None
    when there is none yet."""
    client = registry.connect(settings)
    version = registry.production_version(client, settings)
    if version is None:
        return None
    run = client.get_run(version.run_id) if version.run_id else None
    tags = {**(run.data.tags if run else {}), **version.tags}
    batch_ids = lineage.decode_batch_ids(tags.get(lineage.BATCH_IDS))
    if not batch_ids:
        raise Conflict(
            f"production model {settings.mlflow.model_name} version {version.version} has no "
            f"'{lineage.BATCH_IDS}' tag: its training data is unknown"
        )
    return ProductionLineage(
        version=str(version.version),
        batch_ids=batch_ids,
        holdout_rmsle=run.data.metrics.get(HOLDOUT_PRIMARY) if run else None,
    )


def production_model(settings: Settings) -> ProductionModel | None:
    """The model version the production alias points at, or None when there is none yet."""
    found = production_lineage(settings)
    if found is None:
        return None
    # By version, not alias: the alias may move on while we look.
    model = registry.load_version(settings.mlflow, found.version)
    return ProductionModel(
        version=found.version,
        batch_ids=found.batch_ids,
        holdout_rmsle=found.holdout_rmsle,
        model=model,
    )


def _batch_info(engine: sa.Engine, batch_id: int) -> BatchInfo:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                tables.clean.cleaned_batches.c.rows_in, tables.clean.cleaned_batches.c.rows_out
            ).where(tables.clean.cleaned_batches.c.id == batch_id)
        ).one_or_none()
    if row is None:
        raise NotFound(f"batch {batch_id} is not in the CLEAN database: clean it first")
    return BatchInfo(batch_id=batch_id, rows_in=row.rows_in, rows_out=row.rows_out)


class _EvidenceBase(TypedDict):
    """The Evidence fields every basis has."""

    batch: BatchInfo
    thresholds: Thresholds
    forced: bool


def gather_evidence(
    settings: Settings, engine: sa.Engine, batch_id: int, force: bool = False
) -> Evidence:
    """Compare a clean batch with the production model's training data (or the baseline batch)."""
    thresholds = Thresholds.from_settings(settings.drift)
    batch = _batch_info(engine, batch_id)
    base: _EvidenceBase = {"batch": batch, "thresholds": thresholds, "forced": force}
    trainable = data.trainable_batch_ids(
        settings.databases, settings.drift.decide_min_clean_rows, up_to=batch_id
    )
    if batch_id not in trainable:
        # Judged or made the baseline, a near-empty batch would wedge every later decision.
        if force and not trainable:
            raise BadInput(
                f"cannot force a retrain on batch {batch_id}: it has {batch.rows_out} clean "
                f"rows and no batch up to it has the {settings.drift.decide_min_clean_rows} "
                "(TASADOR_DECIDE_MIN_CLEAN_ROWS) a retraining needs: nothing to train on"
            )
        return Evidence(basis="too_few_rows", **base)
    production = production_model(settings)
    if production is None:
        baseline = trainable[0]  # the first batch with enough rows, not merely the first
        if baseline == batch_id:
            return Evidence(basis="baseline", **base)
        reference_ids, version = [baseline], None
    else:
        reference_ids, version = production.batch_ids, production.version
    if batch_id in reference_ids:
        info = ReferenceInfo(batch_ids=reference_ids, model_version=version)
        return Evidence(basis="already_trained", reference=info, **base)
    training = clean_store.load_listings(engine, reference_ids, holdout=False)
    if training.empty:
        raise Conflict(f"the reference batches {reference_ids} have no clean training rows")
    reference = ReferenceInfo(batch_ids=reference_ids, rows=len(training), model_version=version)
    current = clean_store.load_listings(engine, [batch_id])
    features, target, unseen = compare(training, current, thresholds)
    model = None
    if production is not None:
        source: Literal["run_metric", "reference_holdout"]
        holdout_rmsle, source = production.holdout_rmsle, "run_metric"
        if holdout_rmsle is None:
            holdout = clean_store.load_listings(engine, reference_ids, holdout=True)
            holdout_rmsle, _ = model_error(production.model, holdout, thresholds.model_rows)
            source = "reference_holdout"
        model = model_check(
            production.model, production.version, holdout_rmsle, source, current, thresholds
        )
    return Evidence(
        basis="compared",
        reference=reference,
        features=features,
        target=target,
        unseen=unseen,
        model=model,
        live=live_drift_store.latest(
            db.engine("raw", settings.databases),
            after=decisions_store.last_decided_at(engine),
            alarm=True,
        ),
        **base,
    )


def decide_batch(settings: Settings, batch_id: int, force: bool = False) -> Decision:
    """Decide (once) whether batch ``batch_id`` calls for retraining; store and return it.

    Deciding again returns the stored decision; ``force`` recomputes the evidence, says retrain
    whatever it shows, and replaces the stored decision (keeping its id)."""
    engine = db.engine("clean", settings.databases)
    if not force:
        stored = decisions_store.get(engine, batch_id)
        if stored is not None:
            return stored
    with step("decide", batch_id=batch_id):
        evidence = gather_evidence(settings, engine, batch_id, force)
    return decisions_store.save(
        engine,
        batch_id=batch_id,
        verdict=verdict_of(evidence),
        reason=explain(evidence),
        evidence=evidence.model_dump(mode="json"),
        replace=force,
    )
