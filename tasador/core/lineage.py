"""Lineage tag names shared by MLflow runs and model versions, and their encoding."""

from __future__ import annotations

from collections.abc import Iterable

BATCH_IDS = "batch_ids"  # comma-separated RAW batch ids the model was trained on, e.g. "1,2,5"
DATA_HASH = "data_hash"  # sha256 over the training rows
STUDY_NAME = "study_name"
DECISION_ID = "retrain_decision_id"
RETRAIN_REASON = "retrain_reason"


def encode_batch_ids(batch_ids: Iterable[int]) -> str:
    """Batch ids as a sorted, de-duplicated comma-separated string (for a tag)."""
    return ",".join(str(b) for b in sorted(set(batch_ids)))


def decode_batch_ids(text: str | None) -> list[int]:
    """The batch ids of an encoded tag; an empty list for None or an empty string."""
    if not text:
        return []
    return [int(part) for part in text.split(",") if part.strip()]
