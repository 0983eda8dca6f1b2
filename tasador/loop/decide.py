"""Retrain or skip: judge a cleaned batch against the data the production model learned from.

**Reference.** The training rows (``is_holdout`` false) of the batches recorded in the production
model version's ``batch_ids`` tag (``models:/<model_name>@<production_alias>``). Before any model
exists, the earliest cleaned batch is the baseline: deciding on it always says *retrain*, and
later batches are compared with it. Only rows that survived cleaning are judged.

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
  the strongest evidence: a model that still predicts well need not change.

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from experiments import registry
from tasador.core import clean_store, db, decisions_store, drift, lineage
from tasador.core.columns import (
    CATEGORICAL_COLUMNS,
    DATE_COLUMNS,
    NUMERIC_COLUMNS,
    RAW_COLUMNS,
    TARGET,
)
from tasador.core.config import Settings
from tasador.core.decisions_store import Decision, Verdict
from tasador.core.errors import Conflict, NotFound
from tasador.core.metrics import rmsle

HOLDOUT_METRIC = "holdout_rmsle"
FEATURE_COLUMNS: tuple[str, ...] = tuple(c for c in RAW_COLUMNS if c != TARGET)
NUMERIC_FEATURES: tuple[str, ...] = (*NUMERIC_COLUMNS, *DATE_COLUMNS)
SAMPLE_SEED = 0
MISSING_WORTH_SAYING = 0.05  # a change in a feature's missing share the reason mentions

Basis = Literal["compared", "baseline", "already_trained", "empty"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Thresholds(_Frozen):
    psi: float
    p_value: float
    ks_min_statistic: float
    unseen_share: float
    model_error_ratio: float
    sample_rows: int
    model_rows: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            psi=settings.drift_psi_threshold,
            p_value=settings.drift_p_value,
            ks_min_statistic=settings.drift_ks_min_statistic,
            unseen_share=settings.drift_unseen_share,
            model_error_ratio=settings.drift_model_error_ratio,
            sample_rows=settings.drift_sample_rows,
            model_rows=settings.drift_model_rows,
        )


class CategoryMove(_Frozen):
    category: str
    reference_share: float
    current_share: float


class FeatureShift(_Frozen):
    column: str
    kind: Literal["numeric", "categorical"]
    psi: float | None  # None when a side has no value at all to compare
    psi_p_value: float | None  # chi-square on the PSI buckets
    ks_statistic: float | None = None  # numeric only
    ks_p_value: float | None = None
    moved: bool
    reference_median: float | None = None  # numeric only
    current_median: float | None = None
    reference_missing: float  # share of rows without a value
    current_missing: float
    largest_moves: list[CategoryMove] = []  # categorical only: buckets whose share moved most


class UnseenCategories(_Frozen):
    column: str
    share: float
    expected_share: float
    fired: bool
    top: list[tuple[str, int]]

    @property
    def excess(self) -> float:
        return self.share - self.expected_share


class ModelCheck(_Frozen):
    model_version: str
    rows_scored: int
    batch_rmsle: float
    holdout_rmsle: float
    holdout_source: Literal["run_metric", "reference_holdout"]
    ratio: float
    fired: bool


class BatchInfo(_Frozen):
    batch_id: int
    rows_in: int
    rows_out: int


class ReferenceInfo(_Frozen):
    batch_ids: list[int]
    rows: int | None = None  # training rows compared with; None when not read (already trained)
    model_version: str | None  # None: no production model yet, the baseline batch is the reference


class Evidence(_Frozen):
    basis: Basis
    batch: BatchInfo
    reference: ReferenceInfo | None = None
    thresholds: Thresholds
    forced: bool = False
    features: list[FeatureShift] = []
    target: FeatureShift | None = None
    unseen: list[UnseenCategories] = []
    model: ModelCheck | None = None

    @property
    def fired(self) -> bool:
        return (
            any(f.moved for f in self.features)
            or (self.target is not None and self.target.moved)
            or any(u.fired for u in self.unseen)
            or (self.model is not None and self.model.fired)
        )


# --- the statistics, composed -------------------------------------------------------------


def feature_shift(
    column: str, reference: pd.Series, current: pd.Series, thresholds: Thresholds
) -> FeatureShift:
    """PSI (and KS for numbers) on the values present; missing shares reported beside them."""
    numeric = column in NUMERIC_FEATURES or column == TARGET
    buckets = (
        drift.numeric_buckets(reference, current)
        if numeric
        else drift.categorical_buckets(reference, current)
    )
    comparable = buckets.reference.sum() > 0 and buckets.current.sum() > 0
    psi = drift.psi(buckets) if comparable else None
    psi_p = drift.chi_square(buckets).p_value if comparable else None
    moved = psi is not None and psi >= thresholds.psi and psi_p < thresholds.p_value
    common = {
        "column": column,
        "psi": psi,
        "psi_p_value": psi_p,
        "reference_missing": drift.missing_share(reference),
        "current_missing": drift.missing_share(current),
    }
    if not numeric:
        return FeatureShift(
            **common,
            kind="categorical",
            moved=moved,
            largest_moves=_largest_moves(buckets) if comparable else [],
        )
    ks = drift.ks_two_sample(reference, current)
    if ks is not None:
        moved = moved or (
            ks.statistic >= thresholds.ks_min_statistic and ks.p_value < thresholds.p_value
        )
    return FeatureShift(
        **common,
        kind="numeric",
        moved=moved,
        ks_statistic=ks.statistic if ks else None,
        ks_p_value=ks.p_value if ks else None,
        reference_median=drift.median(reference),
        current_median=drift.median(current),
    )


def _largest_moves(buckets: drift.Buckets, top: int = 3) -> list[CategoryMove]:
    ref = buckets.reference / max(buckets.reference.sum(), 1)
    cur = buckets.current / max(buckets.current.sum(), 1)
    order = np.argsort(-np.abs(cur - ref), kind="stable")[:top]
    return [
        CategoryMove(
            category=buckets.labels[i], reference_share=float(ref[i]), current_share=float(cur[i])
        )
        for i in order
        if cur[i] != ref[i]
    ]


def unseen_categories(
    column: str, reference: pd.Series, current: pd.Series, thresholds: Thresholds
) -> UnseenCategories:
    found = drift.unseen(reference, current)
    return UnseenCategories(
        column=column,
        share=found.share,
        expected_share=found.expected_share,
        fired=found.share - found.expected_share > thresholds.unseen_share,
        top=found.top,
    )


def compare(
    reference: pd.DataFrame, current: pd.DataFrame, thresholds: Thresholds
) -> tuple[list[FeatureShift], FeatureShift, list[UnseenCategories]]:
    """Feature shifts, target shift and unseen categories of ``current`` against ``reference``."""
    if reference.empty or current.empty:
        raise ValueError("comparing needs rows on both sides")
    ref_sample = _sample_rows(reference, thresholds.sample_rows)
    cur_sample = _sample_rows(current, thresholds.sample_rows)
    features = [
        feature_shift(c, ref_sample[c], cur_sample[c], thresholds)
        for c in (*NUMERIC_FEATURES, *CATEGORICAL_COLUMNS)
    ]
    target = feature_shift(TARGET, ref_sample[TARGET], cur_sample[TARGET], thresholds)
    # Every reference row counts here: a sample would miss rare values and call them new.
    unseen = [
        unseen_categories(c, reference[c], current[c], thresholds) for c in CATEGORICAL_COLUMNS
    ]
    return features, target, unseen


def _sample_rows(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=SAMPLE_SEED)


class Predictor(Protocol):
    def predict(self, data: pd.DataFrame) -> Any: ...


def model_error(model: Predictor, frame: pd.DataFrame, max_rows: int) -> tuple[float, int]:
    """RMSLE of the model's price predictions on (a sample of) ``frame``, and the rows scored."""
    scored = _sample_rows(frame, max_rows)
    predictions = np.asarray(model.predict(scored.loc[:, list(FEATURE_COLUMNS)]), dtype=float)
    return rmsle(scored[TARGET].to_numpy(), predictions.reshape(-1)), len(scored)


def model_check(
    model: Predictor,
    version: str,
    holdout_rmsle: float,
    holdout_source: Literal["run_metric", "reference_holdout"],
    current: pd.DataFrame,
    thresholds: Thresholds,
) -> ModelCheck:
    if not holdout_rmsle > 0:  # also refuses NaN (an empty holdout)
        raise ValueError(f"model version {version} has a holdout RMSLE of {holdout_rmsle}")
    batch_rmsle, rows = model_error(model, current, thresholds.model_rows)
    ratio = batch_rmsle / holdout_rmsle
    return ModelCheck(
        model_version=version,
        rows_scored=rows,
        batch_rmsle=batch_rmsle,
        holdout_rmsle=holdout_rmsle,
        holdout_source=holdout_source,
        ratio=ratio,
        fired=ratio > thresholds.model_error_ratio,
    )


def verdict_of(evidence: Evidence) -> Verdict:
    if evidence.basis == "baseline" or evidence.forced:
        return "retrain"
    if evidence.basis in ("already_trained", "empty"):
        return "skip"
    return "retrain" if evidence.fired else "skip"


# --- the reason, in plain words --------------------------------------------------------------


def explain(evidence: Evidence) -> str:
    """A paragraph for people, written from the evidence alone."""
    verdict = verdict_of(evidence)
    b = evidence.batch
    opening = "Retrain (forced by the operator)." if evidence.forced else f"{verdict.capitalize()}."
    survived = f"{b.rows_out:,} of {b.rows_in:,} received rows survived cleaning"
    if evidence.basis == "baseline":
        return (
            f"{opening} No production model exists yet and batch {b.batch_id} is the first "
            f"batch: it is the baseline the first model trains on ({survived})."
        )
    if evidence.basis == "empty":
        return f"{opening} No row of batch {b.batch_id} survived cleaning: nothing to judge."
    ref = evidence.reference
    assert ref is not None
    if evidence.basis == "already_trained":
        return (
            f"{opening} The production model (version {ref.model_version}) was trained on "
            f"batch {b.batch_id} already."
        )
    against = (
        f"production model version {ref.model_version}"
        if ref.model_version
        else "no production model yet, so the baseline batch"
    )
    parts = [
        opening,
        f"Batch {b.batch_id} ({survived}) was compared with the {ref.rows or 0:,} training rows of "
        f"{_batches(ref.batch_ids)} ({against}).",
    ]
    findings = _findings(evidence)
    parts.extend(findings)
    calm = _calm(evidence)
    if findings and calm:
        parts.append(f"Within limits ({_limits(evidence.thresholds)}): {calm}.")
    elif not findings:
        parts.append(f"Nothing moved beyond its limit ({_limits(evidence.thresholds)}): {calm}.")
    blanks = [
        f"{f.column} {_pct(f.reference_missing)} -> {_pct(f.current_missing)}"
        for f in (*evidence.features, *([evidence.target] if evidence.target else []))
        if abs(f.current_missing - f.reference_missing) >= MISSING_WORTH_SAYING
    ]
    if blanks:
        parts.append(
            f"Missing values changed ({', '.join(blanks)}): a data-quality matter for cleaning, "
            "not counted as a shift."
        )
    if not findings and not evidence.forced:
        parts.append("New rows alone are no reason to retrain.")
    return " ".join(parts)


def _findings(evidence: Evidence) -> list[str]:
    """One sentence per kind of check that fired, strongest shifts first."""
    t = evidence.thresholds
    limits = f"limits PSI {t.psi:.2f}, KS D {t.ks_min_statistic:.2f}"
    out = []
    target = evidence.target
    if target is not None and target.moved:
        out.append(f"The price distribution moved ({limits}): {_shift_words(target)}.")
    moved = sorted((f for f in evidence.features if f.moved), key=lambda f: -(f.psi or 0))
    if moved:
        listed = "; ".join(f"{f.column} by {_shift_words(f)}" for f in moved)
        out.append(f"{_count(len(moved), 'feature')} moved ({limits}): {listed}.")
    for u in evidence.unseen:
        if u.fired:
            out.append(
                f"{_pct(u.share)} of rows have a {_noun(u.column)} never seen in training, "
                f"mostly {_top_values(u.top)} (about {_pct(u.expected_share)} expected by chance; "
                f"limit {_points(t.unseen_share)} above that)."
            )
    m = evidence.model
    if m is not None and m.fired:
        out.append(
            f"The production model got worse: RMSLE {m.batch_rmsle:.3f} on this batch against "
            f"{m.holdout_rmsle:.3f} on its holdout, {m.ratio:.2f}x (limit "
            f"{t.model_error_ratio:.2f}x)."
        )
    return out


def _calm(evidence: Evidence) -> str:
    """The kinds of check that did not fire, each with how close it came."""
    out = []
    if evidence.features and not any(f.moved for f in evidence.features):
        top = max(evidence.features, key=lambda f: f.psi or 0)
        out.append(f"the largest feature shift is {top.column} with {_shift_words(top)}")
    target = evidence.target
    if target is not None and not target.moved:
        out.append(f"price {_shift_words(target)}")
    if evidence.unseen and not any(u.fired for u in evidence.unseen):
        top_u = max(evidence.unseen, key=lambda u: (u.excess, u.share))
        out.append(
            f"at most {_pct(top_u.share)} of rows have a {_noun(top_u.column)} unseen in training "
            f"(about {_pct(top_u.expected_share)} expected by chance)"
            if top_u.share > 0
            else "no row has a category unseen in training"
        )
    m = evidence.model
    if m is None:
        out.append("no production model to score yet")
    elif not m.fired:
        out.append(
            f"the production model's RMSLE is {m.batch_rmsle:.3f} on this batch against "
            f"{m.holdout_rmsle:.3f} on its holdout ({m.ratio:.2f}x)"
        )
    return "; ".join(out)


def _limits(t: Thresholds) -> str:
    return (
        f"PSI {t.psi:.2f}, KS D {t.ks_min_statistic:.2f}, unseen categories "
        f"{_points(t.unseen_share)} beyond chance, model error {t.model_error_ratio:.2f}x "
        "its holdout error"
    )


def _shift_words(f: FeatureShift) -> str:
    """ "PSI 0.31, KS D 0.22 (median 3 -> 4, ...)": the statistics, then what changed."""
    stats = "no values to compare" if f.psi is None else f"PSI {f.psi:.2f}"
    if f.ks_statistic is not None:
        stats += f", KS D {f.ks_statistic:.2f}"
    details = []
    if f.reference_median is not None and f.current_median is not None:
        fmt = _money if f.column == TARGET else _month if f.column in DATE_COLUMNS else _number
        details.append(f"median {fmt(f.reference_median)} -> {fmt(f.current_median)}")
    details.extend(
        f"{_bucket(m.category, f.column)} {_pct(m.reference_share)} -> {_pct(m.current_share)}"
        for m in f.largest_moves[:2]
    )
    return f"{stats} ({', '.join(details)})" if details else stats


def _bucket(label: str, column: str) -> str:
    return f"other {_plural(column)}" if label == drift.OTHER else label


def _noun(column: str) -> str:
    return column.replace("_", " ")


def _plural(column: str) -> str:
    return {"status": "statuses", "city": "cities"}.get(column, f"{_noun(column)}s")


def _top_values(top: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{value} ({rows:,} rows)" for value, rows in top[:3])


def _batches(ids: Sequence[int]) -> str:
    return ("batch " if len(ids) == 1 else "batches ") + ", ".join(str(i) for i in ids)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _points(share: float) -> str:
    return f"{100 * share:.1f} points"


def _number(value: float) -> str:
    return f"{value:,.4g}" if abs(value) < 1_000 else f"{value:,.0f}"


def _month(decimal_year: float) -> str:
    year = int(decimal_year)
    return f"{year}-{min(int((decimal_year - year) * 12) + 1, 12):02d}"


def _money(value: float) -> str:
    return f"${value:,.0f}"


# --- the production model and the reference rows ---------------------------------------------


@dataclass(frozen=True)
class ProductionModel:
    version: str
    batch_ids: list[int]
    holdout_rmsle: float | None  # the run metric, when the run logged it
    model: Predictor


def production_model(settings: Settings) -> ProductionModel | None:
    """The model version the production alias points at, or None when there is none yet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = registry.connect(settings)
    try:
        registered = client.get_registered_model(settings.model_name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if settings.production_alias not in registered.aliases:
        return None
    version = client.get_model_version(
        settings.model_name, registered.aliases[settings.production_alias]
    )
    run = client.get_run(version.run_id) if version.run_id else None
    tags = {**(run.data.tags if run else {}), **version.tags}
    batch_ids = lineage.decode_batch_ids(tags.get(lineage.BATCH_IDS))
    if not batch_ids:
        raise Conflict(
            f"production model {settings.model_name} version {version.version} has no "
            f"'{lineage.BATCH_IDS}' tag: its training data is unknown"
        )
    # By version, not alias: the alias may move on while we look.
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version.version}")
    return ProductionModel(
        version=str(version.version),
        batch_ids=batch_ids,
        holdout_rmsle=run.data.metrics.get(HOLDOUT_METRIC) if run else None,
        model=model,
    )


def _batch_info(engine: sa.Engine, batch_id: int) -> BatchInfo:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                clean_store.cleaned_batches.c.rows_in, clean_store.cleaned_batches.c.rows_out
            ).where(clean_store.cleaned_batches.c.id == batch_id)
        ).one_or_none()
    if row is None:
        raise NotFound(f"batch {batch_id} is not in the CLEAN database: clean it first")
    return BatchInfo(batch_id=batch_id, rows_in=row.rows_in, rows_out=row.rows_out)


def _baseline_batch(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.min(clean_store.cleaned_batches.c.id))).scalar_one()
        )


def gather_evidence(
    settings: Settings, engine: sa.Engine, batch_id: int, force: bool = False
) -> Evidence:
    thresholds = Thresholds.from_settings(settings)
    batch = _batch_info(engine, batch_id)
    base = {"batch": batch, "thresholds": thresholds, "forced": force}
    production = production_model(settings)
    if production is None:
        baseline = _baseline_batch(engine)
        if baseline == batch_id:
            return Evidence(basis="baseline", **base)
        reference_ids, version = [baseline], None
    else:
        reference_ids, version = production.batch_ids, production.version
    if batch.rows_out == 0:
        return Evidence(basis="empty", **base)
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
        **base,
    )


def decide_batch(settings: Settings, batch_id: int, force: bool = False) -> Decision:
    """Decide (once) whether batch ``batch_id`` calls for retraining; store and return it.

    Deciding again returns the stored decision; ``force`` recomputes the evidence, says retrain
    whatever it shows, and replaces the stored decision (keeping its id)."""
    engine = db.engine("clean", settings)
    if not force:
        stored = decisions_store.get(engine, batch_id)
        if stored is not None:
            return stored
    evidence = gather_evidence(settings, engine, batch_id, force)
    return decisions_store.save(
        engine,
        batch_id=batch_id,
        verdict=verdict_of(evidence),
        reason=explain(evidence),
        evidence=evidence.model_dump(mode="json"),
        replace=force,
    )
