"""One step of the loop's front half: collect the next batch into RAW, clean it into CLEAN."""

from __future__ import annotations

from dataclasses import dataclass

from tasador.core import clean_store, db
from tasador.core.cleaning import CleaningReport
from tasador.core.collector import (
    CollectResult,
    Progress,
    RecoverResult,
    collect_batch,
    recover_gaps,
)
from tasador.core.config import DatabaseSettings, Settings


@dataclass(frozen=True)
class IngestResult:
    """The outcome of collecting a batch and, when one came, its cleaning report."""

    collected: CollectResult
    report: CleaningReport | None  # None when the API had no new batch


def collect(
    settings: Settings,
    api_url: str | None = None,
    group: int | None = None,
    day: str | None = None,
    progress: Progress | None = None,
) -> CollectResult:
    """Collect the next batch into RAW; arguments left out come from the settings.
    ``progress`` is told how it goes (bytes received, rows read)."""
    return collect_batch(
        db.engine("raw", settings.databases),
        api_url or settings.data_api.data_api_url,
        group or settings.data_api.group_number,
        day or settings.data_api.day,
        inbox=settings.inbox_dir,
        timeout_s=settings.data_api.api_timeout_s,
        max_retries=settings.data_api.api_max_retries,
        backoff_s=settings.data_api.api_backoff_s,
        max_response_bytes=settings.data_api.api_max_response_bytes,
        progress=progress,
    )


def recover(
    settings: Settings, group: int, day: str | None = None, api_url: str | None = None
) -> RecoverResult:
    """Fill the group's skipped batch numbers by replaying its sequence on the data API."""
    return recover_gaps(
        db.engine("raw", settings.databases),
        api_url or settings.data_api.data_api_url,
        group,
        day,
        timeout_s=settings.data_api.api_timeout_s,
        max_retries=settings.data_api.api_max_retries,
        backoff_s=settings.data_api.api_backoff_s,
        max_response_bytes=settings.data_api.api_max_response_bytes,
    )


def clean(databases: DatabaseSettings, batch_id: int) -> CleaningReport:
    """Clean a RAW batch into CLEAN and return the cleaning report."""
    cleaned = clean_store.clean_batch(
        db.engine("raw", databases), db.engine("clean", databases), batch_id
    )
    return cleaned.report


def collect_and_clean(
    settings: Settings, api_url: str | None = None, group: int | None = None, day: str | None = None
) -> IngestResult:
    """Collect the next batch and clean it; no report when the API had no new batch."""
    collected = collect(settings, api_url, group, day)
    if collected.batch_id is None:
        return IngestResult(collected=collected, report=None)
    return IngestResult(collected=collected, report=clean(settings.databases, collected.batch_id))
