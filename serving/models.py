"""A registered model version made ready to serve: its scorer and what the registry says of it.

Everything a response needs about the model (name, version, lineage, promotion) is read once,
when the version is loaded, so requests never wait on MLflow.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from experiments import registry
from serving import validation
from serving.fast_path import FastScorer, compile_fast_path, pipeline_prices
from serving.schema import Listing, ModelRef
from tasador.core import lineage
from tasador.core.config import MlflowSettings, Settings
from tasador.core.errors import BadInput

logger = logging.getLogger(__name__)


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
    scoring: str  # fast path or pipeline, and why
    validation: str | None = None  # what was checked before it served (serving.validation)
    refused: str | None = None  # the version the alias names instead, refused, and why

    def ref(self) -> ModelRef:
        return ModelRef(name=self.name, version=self.version, alias=self.alias)


class Scorer:
    """Prices for validated listings: the fast path when it reproduces the model, else the
    pipeline itself (``how`` says which, and why; ``GET /model`` shows it as ``scoring``)."""

    def __init__(self, raw_model: Any) -> None:
        self.raw_model = raw_model
        self.fast: FastScorer | None
        self.fast, self.how = compile_fast_path(raw_model)
        if self.fast is None:  # never silent: slower scoring is said here and in /model
            logger.warning("scoring through the pipeline, not the fast path: %s", self.how)

    def predict(self, listings: Sequence[Listing]) -> np.ndarray:
        if self.fast is not None:
            return self.fast.predict(listings)
        return pipeline_prices(self.raw_model, listings)


@dataclass(frozen=True)
class ServedModel:
    """A loaded model version: what it is, how it scores, and the fitted model for SHAP."""

    info: ModelInfo
    scorer: Scorer
    raw_model: Any  # the fitted scikit-learn model (SHAP explains this very object)


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


def load(client: MlflowClient, settings: Settings, version: ModelVersion) -> ServedModel:
    """Download, prepare and validate ``version`` (by number: the alias may move meanwhile);
    raises :class:`serving.validation.Refused` when it fails validation."""
    pyfunc = registry.load_version(settings.mlflow, version.version)
    try:
        raw = pyfunc.get_raw_model()
    except NotImplementedError:
        raise BadInput(
            f"{settings.mlflow.model_name} version {version.version} is not a scikit-learn model"
        ) from None
    scorer = Scorer(raw)
    info = describe(client, settings.mlflow, version, scorer.how)
    verdict = validation.validate(
        scorer.predict,
        registry.load_validation(client, version),
        info.metrics.get(validation.REGISTERED_RMSLE),
        settings.serving.serving_validation_tolerance,
        scorer.fast.vocabulary if scorer.fast is not None else None,
    )
    if not verdict.passed:
        raise validation.Refused(info.version, verdict)
    info = info.model_copy(update={"validation": verdict.detail})
    return ServedModel(info=info, scorer=scorer, raw_model=raw)
