"""A registered model version made ready to serve: its scorer and what the registry says of it.

Everything a response needs about the model (name, version, lineage, promotion) is read once,
when the version is loaded, so requests never wait on MLflow.

Serving never unpickles: a version is loaded from its scoring artifact only (data: tables,
arrays, boosters in their own format; experiments.scoring.artifact), never from the pickled
pipeline logged beside it. A version without one is refused, saying so; one whose artifact does
not give the prices the pipeline gave at registration (on its probe listings and validation
sample) is refused too.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from experiments import registry
from experiments.scoring import artifact
from experiments.scoring.ranges import RangeTable
from serving import price_ranges, validation
from serving.fast_path import FastScorer, mismatch
from serving.price_ranges import PriceRange
from serving.schema import ModelRef
from serving.validation import Refused, Verdict
from tasador.core import lineage
from tasador.core.config import MlflowSettings, Settings


class ModelInfo(BaseModel):
    """What ``GET /model`` answers: the version serving and why it is the one."""

    name: str
    version: str
    alias: str
    run_id: str | None
    family: str | None
    registered_at: datetime | None
    promoted_at: datetime | None
    promotion: str | None  # the champion/challenger verdict, in words
    retrain_reason: str | None
    study_name: str | None
    batch_ids: list[int]
    batch_range: str | None  # "1-5"
    metrics: dict[str, float]
    loaded_at: datetime
    scoring: str  # the scoring artifact: what it is and what was checked
    validation: str | None = None  # what was checked before it served (serving.validation)
    refused: str | None = None  # the version the alias names instead, refused, and why
    price_range: PriceRange | None = None  # the ranges given with its prices (None: not loaded)

    def ref(self) -> ModelRef:
        return ModelRef(name=self.name, version=self.version, alias=self.alias)


@dataclass(frozen=True)
class ServedModel:
    """A loaded model version: what it is, and the scorer made from its scoring artifact (which
    SHAP explains too: ``scorer.artifact``)."""

    info: ModelInfo
    scorer: FastScorer

    @property
    def ranges(self) -> RangeTable | None:
        """The version's calibrated price ranges (None: registered before it had them)."""
        return None if self.scorer.artifact is None else self.scorer.artifact.ranges


def _batch_range(batch_ids: list[int]) -> str | None:
    if not batch_ids:
        return None
    first, last = batch_ids[0], batch_ids[-1]
    return str(first) if first == last else f"{first}-{last}"


def _timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def describe(
    client: MlflowClient, mlflow: MlflowSettings, version: ModelVersion, scoring: str
) -> ModelInfo:
    """The registry's account of ``version`` (version tags win over its run's tags)."""
    run = None
    if version.run_id:
        try:
            run = client.get_run(version.run_id)
        except MlflowException:
            run = None  # a deleted run: the version still serves
    tags = {**(run.data.tags if run else {}), **version.tags}
    batch_ids = lineage.decode_batch_ids(tags.get(lineage.BATCH_IDS))
    promoted = tags.get(registry.PROMOTED_TAG, "").lower() == "true"
    return ModelInfo(
        name=mlflow.model_name,
        version=str(version.version),
        alias=mlflow.production_alias,
        run_id=version.run_id or None,
        family=tags.get(registry.FAMILY_TAG),
        registered_at=datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
        if version.creation_timestamp
        else None,
        promoted_at=_timestamp(tags.get(registry.DECIDED_AT_TAG)) if promoted else None,
        promotion=tags.get(registry.PROMOTION_VERDICT_TAG),
        retrain_reason=tags.get(lineage.RETRAIN_REASON),
        study_name=tags.get(lineage.STUDY_NAME),
        batch_ids=batch_ids,
        batch_range=_batch_range(batch_ids),
        metrics=dict(run.data.metrics) if run else {},
        loaded_at=datetime.now(UTC),
        scoring=scoring,
    )


def prepare(
    version: str, scoring: artifact.Artifact, sample: dict[str, list[Any]] | None
) -> tuple[FastScorer, str]:
    """The scorer of ``version``'s artifact ``scoring`` and what was checked, in words; raises
    Refused when it does not give the prices registered with it (on its probe listings and the
    validation ``sample``)."""
    scorer = FastScorer(scoring)
    kept, probes = validation.parse_listings(scoring.probes)
    problem = mismatch(scorer, probes, scoring.expected_probes[kept])
    checked = f"{len(probes)} probe"
    expected = scoring.expected_validation
    if problem is None and sample is not None and expected is not None:
        if len(expected) != len(sample["listings"]):
            problem = f"{len(expected)} prices for {len(sample['listings'])} validation listings"
        else:
            kept, listings = validation.parse_listings(sample["listings"])
            problem = mismatch(scorer, listings, expected[kept])
            checked += f" and {len(listings)} validation"
    if problem is not None:
        detail = f"its scoring artifact does not give the prices registered with it: {problem}"
        raise Refused(version, Verdict(False, "artifact_mismatch", detail))
    walked = scorer.walk_trees(probes)
    how = f"scoring artifact ({scoring.family}; the registered prices on {checked} listings"
    return scorer, how + ("" if walked is None else f"; {walked}") + ")"


def _artifact(client: MlflowClient, version: ModelVersion) -> artifact.Artifact:
    """``version``'s scoring artifact, downloaded and read; Refused when it has none that reads."""
    with tempfile.TemporaryDirectory() as folder:
        local = registry.download_scoring(client, version, Path(folder))
        if local is None:
            why = version.tags.get(registry.SCORING_TAG) or "registered without one"
            detail = (
                f"no scoring artifact stored with it ({why}); serving loads nothing else, "
                "never the pickled model"
            )
            raise Refused(str(version.version), Verdict(False, "no_artifact", detail))
        try:
            return artifact.read(local)
        except artifact.ArtifactError as exc:
            raise Refused(str(version.version), Verdict(False, "bad_artifact", str(exc))) from None


def load(client: MlflowClient, settings: Settings, version: ModelVersion) -> ServedModel:
    """Download, prepare and validate ``version`` (by number: the alias may move meanwhile);
    raises :class:`serving.validation.Refused` when it fails validation."""
    scoring = _artifact(client, version)
    sample = registry.load_validation(client, version)
    scorer, how = prepare(str(version.version), scoring, sample)
    info = describe(client, settings.mlflow, version, how)
    _, probes = validation.parse_listings(scoring.probes)
    verdict = validation.validate(
        scorer.predict,
        sample,
        info.metrics.get(validation.REGISTERED_RMSLE),
        settings.serving.serving_validation_tolerance,
        probes,
    )
    if not verdict.passed:
        raise Refused(info.version, verdict)
    coverage = settings.serving.serving_range_coverage
    described = price_ranges.describe(scoring.ranges, coverage)
    info = info.model_copy(update={"validation": verdict.detail, "price_range": described})
    return ServedModel(info=info, scorer=scorer)
