"""Lineage of one prediction, one model version or one batch: `tasador lineage`.

The chain is always the same, read from where each link is recorded:

    request (RAW inference_requests) -> model version (MLflow registry: its lineage tags)
    -> training run and study (MLflow runs) -> retrain decision and its reason (CLEAN)
    -> promotion verdict (CLEAN model_promotions) -> batches with their RAW content hashes (RAW)

:func:`version_chain` builds the version's links; a request adds the row that names the
version, a batch lists the versions whose ``batch_ids`` tag contains it with the number of
requests each answered. One query path, three entry points.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, ConfigDict

from experiments import promotions, registry, runs
from tasador.core import db, decisions_store, lineage, raw_store, tables
from tasador.core.config import MlflowSettings, Settings
from tasador.core.errors import BadInput, NotFound


class _Record(BaseModel):
    # from_attributes: the stores' rows and dataclasses convert field by field.
    model_config = ConfigDict(frozen=True, extra="forbid", from_attributes=True)


class BatchLink(_Record):
    """A RAW batch a version learned from, with the hash of the payload as received."""

    batch_id: int
    group: int
    day: str | None
    batch_number: int
    rows: int
    payload_sha256: str
    received_at: datetime


class DecisionLink(_Record):
    """The retrain decision that launched the training."""

    decision_id: int
    batch_id: int
    verdict: str
    reason: str
    decided_at: datetime


class PromotionLink(_Record):
    """The champion/challenger verdict on the version."""

    promoted: bool
    decided_at: datetime
    previous_version: int | None
    summary: str


class VersionChain(_Record):
    """A model version and everything it came from."""

    model_name: str
    version: int
    family: str | None
    aliases: list[str]
    training_run_id: str | None
    study_name: str | None
    study_run_id: str | None
    data_hash: str | None
    decision: DecisionLink | None
    promotion: PromotionLink | None
    batches: list[BatchLink]
    requests_answered: int


class RequestLink(_Record):
    """One logged inference request (a row per priced listing)."""

    id: int
    request_id: uuid.UUID | None
    row_index: int | None
    requested_at: datetime
    endpoint: str
    status_code: int
    prediction: float | None
    model_version: str | None


class RequestLineage(_Record):
    """`tasador lineage --request ID`: the request's rows and the version that answered."""

    requests: list[RequestLink]
    version: VersionChain | None  # None when no model answered (an error response)


class BatchLineage(_Record):
    """`tasador lineage --batch B`: the batch and the versions that learned from it."""

    batch: BatchLink
    versions: list[VersionChain]


def _batch_link(row: sa.Row[Any]) -> BatchLink:
    return BatchLink(
        batch_id=row.id,
        group=row.group_number,
        day=row.day or None,
        batch_number=row.batch_number,
        rows=row.row_count,
        payload_sha256=row.payload_sha256,
        received_at=row.received_at,
    )


def _requests_answered(raw: sa.Engine, model_name: str, versions: list[int]) -> dict[int, int]:
    """Successful prediction rows per version of ``model_name`` in the inference log."""
    log = tables.raw.inference_requests
    with raw.connect() as conn:
        counted = conn.execute(
            sa.select(log.c.model_version, sa.func.count())
            .where(
                log.c.model_name == model_name,
                log.c.model_version.in_([str(v) for v in versions]),
                log.c.status_code == 200,
            )
            .group_by(log.c.model_version)
        ).all()
    return {int(version): count for version, count in counted}


def _study_run_id(
    client: MlflowClient, training_run_id: str | None, study: str | None
) -> str | None:
    """The study's parent run: found through the training run's experiment and study tag."""
    if training_run_id is None or study is None:
        return None
    experiment = client.get_run(training_run_id).info.experiment_id
    found = client.search_runs(
        [experiment],
        f"tags.`{lineage.STUDY_NAME}` = '{study}' and tags.`{runs.KIND_TAG}` = 'study'",
        max_results=1,
    )
    return found[0].info.run_id if found else None


def _chain(
    settings: Settings, client: MlflowClient, version: ModelVersion, answered: int
) -> VersionChain:
    raw, clean = db.engine("raw", settings.databases), db.engine("clean", settings.databases)
    tags = version.tags
    number = int(version.version)
    decision = None
    if tags.get(lineage.DECISION_ID):
        stored = decisions_store.get_by_id(clean, int(tags[lineage.DECISION_ID]))
        if stored is not None:
            decision = DecisionLink(
                decision_id=stored.id,
                batch_id=stored.batch_id,
                verdict=stored.verdict,
                reason=stored.reason,
                decided_at=stored.created_at,
            )
    verdict = promotions.get(clean, settings.mlflow.model_name, number)
    batches = []
    for batch_id in lineage.decode_batch_ids(tags.get(lineage.BATCH_IDS)):
        row = raw_store.get_batch(raw, batch_id)
        if row is not None:
            batches.append(_batch_link(row))
    registered = client.get_registered_model(settings.mlflow.model_name)
    run_id = version.run_id or None
    return VersionChain(
        model_name=settings.mlflow.model_name,
        version=number,
        family=tags.get(registry.FAMILY_TAG),
        aliases=sorted(a for a, v in registered.aliases.items() if int(v) == number),
        training_run_id=run_id,
        study_name=tags.get(lineage.STUDY_NAME),
        study_run_id=_study_run_id(client, run_id, tags.get(lineage.STUDY_NAME)),
        data_hash=tags.get(lineage.DATA_HASH),
        decision=decision,
        promotion=None if verdict is None else PromotionLink.model_validate(verdict),
        batches=batches,
        requests_answered=answered,
    )


def model_version(client: MlflowClient, mlflow: MlflowSettings, number: int) -> ModelVersion:
    """Version ``number`` of the configured model; NotFound when it has none."""
    try:
        return client.get_model_version(mlflow.model_name, str(number))
    except MlflowException as exc:
        raise NotFound(f"model {mlflow.model_name} has no version {number}") from exc


def version_chain(settings: Settings, number: int) -> VersionChain:
    """`--version V`: the version, its training run and study, decision, verdict and batches."""
    client = registry.connect(settings)
    version = model_version(client, settings.mlflow, number)
    answered = _requests_answered(
        db.engine("raw", settings.databases), settings.mlflow.model_name, [number]
    )
    return _chain(settings, client, version, answered.get(number, 0))


def request_lineage(settings: Settings, request: str) -> RequestLineage:
    """`--request ID`: ``ID`` is the row id of ``inference_requests`` or the request's UUID
    (the ``request_id`` a response carries, which covers every row of a batch request)."""
    log = tables.raw.inference_requests
    if request.isdigit():
        where = log.c.id == int(request)
    else:
        try:
            where = log.c.request_id == uuid.UUID(request)
        except ValueError as exc:
            raise BadInput(f"{request!r} is neither a request row id nor a request UUID") from exc
    with db.engine("raw", settings.databases).connect() as conn:
        rows = conn.execute(sa.select(log).where(where).order_by(log.c.row_index, log.c.id)).all()
    if not rows:
        raise NotFound(f"no logged inference request {request}")
    links = [RequestLink.model_validate(r) for r in rows]
    answered_by = rows[0].model_version
    if not answered_by or rows[0].model_name != settings.mlflow.model_name:
        return RequestLineage(requests=links, version=None)
    return RequestLineage(requests=links, version=version_chain(settings, int(answered_by)))


def batch_lineage(settings: Settings, batch_id: int) -> BatchLineage:
    """`--batch B`: which versions learned from batch ``B`` and how many requests they
    answered."""
    raw = db.engine("raw", settings.databases)
    row = raw_store.get_batch(raw, batch_id)
    if row is None:
        raise NotFound(f"no RAW batch with id {batch_id}")
    client = registry.connect(settings)
    learned = [
        v
        for v in client.search_model_versions(f"name = '{settings.mlflow.model_name}'")
        if batch_id in lineage.decode_batch_ids(v.tags.get(lineage.BATCH_IDS))
    ]
    answered = _requests_answered(
        raw, settings.mlflow.model_name, [int(v.version) for v in learned]
    )
    chains = [
        _chain(settings, client, v, answered.get(int(v.version), 0))
        for v in sorted(learned, key=lambda v: int(v.version))
    ]
    return BatchLineage(batch=_batch_link(row), versions=chains)


def describe(chain: VersionChain) -> list[str]:
    """The version's chain as lines for people, from the model down to the batches."""
    aliases = f" @{', @'.join(chain.aliases)}" if chain.aliases else ""
    lines = [
        f"model {chain.model_name} version {chain.version}{aliases} ({chain.family or '?'}), "
        f"answered {chain.requests_answered} logged predictions",
        f"  training run {chain.training_run_id or '-'}; study {chain.study_name or '-'} "
        f"(run {chain.study_run_id or '-'}); data hash {chain.data_hash or '-'}",
    ]
    if chain.promotion is not None:
        verdict = "promoted" if chain.promotion.promoted else "kept out"
        lines.append(
            f"  {verdict} {chain.promotion.decided_at:%Y-%m-%d %H:%M}: {chain.promotion.summary}"
        )
    if chain.decision is not None:
        d = chain.decision
        lines.append(f"  decision {d.decision_id} on batch {d.batch_id} ({d.verdict}): {d.reason}")
    for b in chain.batches:
        day = f"/{b.day}" if b.day else ""
        lines.append(
            f"  batch {b.batch_id} (group {b.group}{day}, number {b.batch_number}, {b.rows} rows, "
            f"received {b.received_at:%Y-%m-%d %H:%M}) sha256 {b.payload_sha256}"
        )
    return lines
