"""`tasador reproduce --version V`: rebuild a registered version from RAW and say whether it
comes out the same.

What a version recorded, and where:

- its MLflow version tags: the batch ids, the data hash of its training rows, the study, the best
  trial's Optuna params and the family; its run: the rows the refit used, the holdout RMSLE, the
  holdout's data hash (the ``holdout`` dataset) and the code version;
- the study's plan (Optuna storage): the seed, the search space the params are read with, and
  each batch's RAW hashes when the study started (``payload_sha256`` of the body received, and
  ``rows_sha256`` of the rows RAW stored, since the body itself is not kept).

The rebuild reads the batches' rows from RAW, checks both hashes per batch, cleans them with the
loop's own cleaning (duplicates of batches cleaned before them left out, as CLEAN does), splits
them by the shared holdout rule, checks the training and holdout data hashes, and refits the
recorded family, parameters and seed on the same sample of rows. The rebuilt model is then scored
next to the registered one on the rebuilt holdout: its RMSLE must be within the tolerance
(relative) of the recorded figure, and the median relative difference of the two models' prices
within it too. When the data differs nothing is refitted: the answer names what differs.

Read-only: nothing is registered, logged, tagged or moved; running it twice gives the same answer.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from mlflow.entities import Run
from pydantic import BaseModel, ConfigDict

from experiments import data, gate, leaderboard, refit, registry
from experiments.spaces import FAMILY_PARAM
from experiments.study import RawBatch, StudyPlan, load_study
from tasador.core import clean_store, db, lineage, raw_store
from tasador.core.config import Settings
from tasador.core.errors import BadInput
from tasador.core.metrics import PRIMARY
from tasador.core.names import HOLDOUT_PRIMARY
from tasador.loop.provenance import model_version


class BatchCheck(BaseModel):
    """One batch's RAW hashes: as the study recorded them and as RAW holds them now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: int
    payload_expected: str | None  # None: the study predates the record
    payload_found: str | None  # None: RAW no longer has the batch
    rows_expected: str | None
    rows_found: str | None

    def differences(self) -> list[str]:
        if self.payload_found is None:
            return [f"batch {self.batch_id} is no longer in RAW"]
        found = []
        if self.payload_expected is not None and self.payload_expected != self.payload_found:
            found.append(
                f"batch {self.batch_id}'s payload changed: sha256 {self.payload_expected} when "
                f"trained, {self.payload_found} now"
            )
        if self.rows_expected is not None and self.rows_expected != self.rows_found:
            found.append(
                f"batch {self.batch_id}'s rows in RAW changed: sha256 {self.rows_expected} when "
                f"trained, {self.rows_found} now"
            )
        return found


class Reproduction(BaseModel):
    """A version rebuilt from RAW: what was checked, the figures, and what differs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_name: str
    version: int
    family: str
    study_name: str
    tolerance: float
    batches: list[BatchCheck]
    data_hash_expected: str
    data_hash_found: str | None
    holdout_hash_expected: str | None  # None: the run records none
    holdout_hash_found: str | None
    training_rows: int | None  # rows the refit was fitted on
    holdout_rows: int | None
    code_version_trained: str | None
    code_version_now: str
    recorded_rmsle: float | None  # the version's holdout RMSLE as registered
    rebuilt_rmsle: float | None  # the refit's, on the rebuilt holdout
    median_relative_difference: float | None  # rebuilt vs registered prices on the holdout
    differences: list[str]

    @property
    def reproduced(self) -> bool:
        return not self.differences


def reproduce(settings: Settings, version: int, tolerance: float | None = None) -> Reproduction:
    """Rebuild version ``version`` from RAW and compare it with the registered one (see the
    module doc). ``tolerance`` None: ``settings.search.reproduce_tolerance``."""
    tolerance = settings.search.reproduce_tolerance if tolerance is None else tolerance
    if not 0 < tolerance < 1:
        raise BadInput(f"the tolerance must lie between 0 and 1, not {tolerance}")
    client = registry.connect(settings)
    found = model_version(client, settings.mlflow, version)
    tags = found.tags
    missing = [
        tag
        for tag in (lineage.BATCH_IDS, lineage.DATA_HASH, lineage.STUDY_NAME, registry.PARAMS_TAG)
        if not tags.get(tag)
    ]
    if missing or not found.run_id:
        raise BadInput(
            f"version {version} of {settings.mlflow.model_name} was not made by a search: it "
            f"records no {', '.join(missing) or 'training run'}, nothing to rebuild it from"
        )
    batch_ids = lineage.decode_batch_ids(tags[lineage.BATCH_IDS])
    trial_params = json.loads(tags[registry.PARAMS_TAG])
    _, plan = load_study(tags[lineage.STUDY_NAME], settings)
    run = client.get_run(found.run_id)
    trained_code = run.data.tags.get(leaderboard.CODE_VERSION_TAG)
    now_code = leaderboard.code_version()
    result: dict[str, Any] = {
        "model_name": settings.mlflow.model_name,
        "version": version,
        "family": tags.get(registry.FAMILY_TAG, trial_params.get(FAMILY_PARAM, "?")),
        "study_name": plan.study_name,
        "tolerance": tolerance,
        "data_hash_expected": tags[lineage.DATA_HASH],
        "holdout_hash_expected": _holdout_hash(run),
        "code_version_trained": trained_code,
        "code_version_now": now_code,
        "recorded_rmsle": run.data.metrics.get(HOLDOUT_PRIMARY),
        # Filled as far as the rebuild gets.
        "data_hash_found": None,
        "holdout_hash_found": None,
        "training_rows": None,
        "holdout_rows": None,
        "rebuilt_rmsle": None,
        "median_relative_difference": None,
    }

    raw = db.engine("raw", settings.databases)
    present = {b: raw_store.get_batch(raw, b) for b in batch_ids}
    if any(row is None for row in present.values()):
        checks = [_check(plan.raw_batches.get(b), b, row, None) for b, row in present.items()]
        differences = [d for c in checks for d in c.differences()]
        return Reproduction(**result, batches=checks, differences=differences)

    clean = db.engine("clean", settings.databases)
    # The batches cleaned before the version's last one: their listings are not stored twice.
    before = [b for b in clean_store.cleaning_reports(clean) if b < max(batch_ids)]
    rebuilt = clean_store.rebuild_listings(raw, batch_ids, before)
    checks = [
        _check(plan.raw_batches.get(b), b, row, rebuilt.rows_sha256[b])
        for b, row in present.items()
    ]
    differences = [d for c in checks for d in c.differences()]
    rows = rebuilt.listings
    train = rows.loc[~rows["is_holdout"]].reset_index(drop=True)
    holdout = rows.loc[rows["is_holdout"]].reset_index(drop=True)
    result.update(
        data_hash_found=data.data_hash(train),
        holdout_hash_found=data.data_hash(holdout),
        holdout_rows=len(holdout),
    )
    if result["data_hash_found"] != result["data_hash_expected"]:
        differences.append(
            f"the training rows rebuilt from RAW have data hash {result['data_hash_found']}; the "
            f"version was trained on {result['data_hash_expected']}"
        )
    expected_holdout = result["holdout_hash_expected"]
    if expected_holdout is not None and result["holdout_hash_found"] != expected_holdout:
        differences.append(
            f"the holdout rows rebuilt from RAW have data hash {result['holdout_hash_found']}; "
            f"the version was scored on {expected_holdout}"
        )
    if differences or train.empty or holdout.empty:
        if not differences:
            differences.append("the batches rebuild no training or no holdout rows")
        return Reproduction(**result, batches=checks, differences=differences)

    figures, failed = _refit_and_compare(
        settings, version, plan, trial_params, run, train, holdout, tolerance
    )
    result.update(figures)
    if failed and trained_code != now_code:
        failed.append(f"it was trained with code {trained_code or '?'}; this is {now_code}")
    return Reproduction(**result, batches=checks, differences=differences + failed)


def _refit_and_compare(
    settings: Settings,
    version: int,
    plan: StudyPlan,
    trial_params: dict[str, Any],
    run: Run,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    tolerance: float,
) -> tuple[dict[str, Any], list[str]]:
    """Refit the trial on the rows the refit used, score it and the registered model on the
    holdout: the figures of :class:`Reproduction`, and the ones beyond the tolerance."""
    # The refit drew this many rows with the plan's seed: the same draw on the same rows.
    sample_rows = int(run.data.params.get(refit.TRAINING_ROWS_PARAM, len(train)))
    sample = data.sample(train, sample_rows, plan.seed)
    model, _ = refit.fit_trial(plan, trial_params, sample)
    family = str(trial_params.get(FAMILY_PARAM, "?"))
    rebuilt = gate.score("rebuilt", version, family, model, holdout)
    registered_model = registry.load_version(settings.mlflow, version)
    registered = gate.score("registered", version, family, registered_model, holdout)
    recorded = run.data.metrics.get(HOLDOUT_PRIMARY)
    if recorded is None:  # a version never faced with production: its figure on these rows
        recorded = registered.metrics[PRIMARY]
    rmsle = rebuilt.metrics[PRIMARY]
    spread = _median_relative_difference(rebuilt.predictions, registered.predictions)
    failed = []
    if not (math.isfinite(rmsle) and abs(rmsle - recorded) <= tolerance * recorded):
        failed.append(
            f"the rebuilt model's holdout RMSLE is {rmsle:.4f}, the registered {recorded:.4f}: "
            f"{_relative(rmsle, recorded)} apart, beyond the tolerance of {tolerance:.1%}"
        )
    if not spread <= tolerance:
        failed.append(
            f"the rebuilt model's holdout prices differ from the registered model's by "
            f"{spread:.2%} (median), beyond the tolerance of {tolerance:.1%}"
        )
    figures = {
        "training_rows": len(sample),
        "recorded_rmsle": recorded,
        "rebuilt_rmsle": rmsle,
        "median_relative_difference": spread,
    }
    return figures, failed


def _check(
    recorded: RawBatch | None, batch_id: int, row: sa.Row[Any] | None, rows_found: str | None
) -> BatchCheck:
    """``recorded``: the plan's record of the batch (None: the study predates it); ``row``: the
    batch's RAW row (None: gone); ``rows_found``: its rows' hash now."""
    return BatchCheck(
        batch_id=batch_id,
        payload_expected=None if recorded is None else recorded.payload_sha256,
        payload_found=None if row is None else row.payload_sha256,
        rows_expected=None if recorded is None else recorded.rows_sha256,
        rows_found=rows_found,
    )


def _holdout_hash(run: Run) -> str | None:
    """The data hash of the holdout the version was scored on (its run's ``holdout`` dataset)."""
    for given in run.inputs.dataset_inputs if run.inputs else []:
        contexts = {t.value for t in given.tags if t.key == leaderboard.CONTEXT_TAG}
        if "holdout" in contexts and given.dataset.profile:
            value = json.loads(given.dataset.profile).get("data_hash")
            return str(value) if value else None
    return None


def _median_relative_difference(rebuilt: np.ndarray, registered: np.ndarray) -> float:
    """The median of |rebuilt - registered| / registered over the holdout rows (NaN, which no
    tolerance admits, when any price is not finite)."""
    if not (np.isfinite(rebuilt).all() and np.isfinite(registered).all()):
        return math.nan
    return float(np.median(np.abs(rebuilt - registered) / np.maximum(np.abs(registered), 1.0)))


def _relative(value: float, reference: float) -> str:
    return f"{abs(value - reference) / reference:.2%}" if reference else "infinitely"


def describe(r: Reproduction) -> list[str]:
    """The reproduction for people: the verdict first, then the figures and the checks."""
    head = f"{r.model_name} version {r.version} ({r.family}, study {r.study_name})"
    lines = [f"reproduced: {head}" if r.reproduced else f"not reproduced: {head}"]
    lines += [f"  differs: {d}" for d in r.differences]
    if r.rebuilt_rmsle is not None and r.recorded_rmsle is not None:
        spread = r.median_relative_difference
        lines.append(
            f"  holdout RMSLE {r.rebuilt_rmsle:.4f} rebuilt vs {r.recorded_rmsle:.4f} registered "
            f"({_relative(r.rebuilt_rmsle, r.recorded_rmsle)} apart) on {r.holdout_rows:,} rows; "
            f"prices differ by {spread:.2%} (median); tolerance {r.tolerance:.1%}"
        )
    if r.training_rows is not None:
        lines.append(f"  refitted on {r.training_rows:,} training rows rebuilt from RAW")
    same = "same" if r.data_hash_found == r.data_hash_expected else "differs"
    lines.append(f"  data hash {r.data_hash_found or '-'} ({same} as trained)")
    for c in r.batches:
        state = "unchanged" if not c.differences() else "CHANGED"
        if c.rows_expected is None and c.payload_found is not None:
            state = "not recorded when trained: checked through the data hash"
        lines.append(f"  batch {c.batch_id}: RAW payload sha256 {c.payload_found or '-'} {state}")
    lines.append(f"  code: trained with {r.code_version_trained or '?'}, now {r.code_version_now}")
    return lines
