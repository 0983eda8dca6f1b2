"""`tasador reproduce`'s logic: a version made by a real search rebuilt from RAW, and what is
said when RAW or the record no longer match."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient

from experiments import data
from tasador.core import db, lineage
from tasador.loop import reproduce
from tests.helpers.search import searched_version


def _version_made_by_a_search(search_settings, raw_sample):
    """Version 1, searched on two batches; the second repeats 100 listings of the first, which
    CLEAN stores once (with the first batch): the rebuild must leave them out the same way."""
    settings = search_settings.updated(search_trials=3)
    frame = pd.concat([raw_sample.iloc[:800], raw_sample.iloc[700:1300]], ignore_index=True)
    return settings, searched_version(settings, frame, [800, 600])


def _registry_state(settings):
    client = MlflowClient(settings.mlflow.mlflow_tracking_uri)
    name = settings.mlflow.model_name
    experiment = client.get_experiment_by_name(settings.mlflow.experiment_name)
    return (
        [(v.version, dict(v.tags)) for v in client.search_model_versions(f"name = '{name}'")],
        client.get_registered_model(name).aliases,
        len(client.search_runs([experiment.experiment_id])),
    )


def test_a_searched_version_is_reproduced_from_raw_and_nothing_is_written(
    search_settings, raw_sample
):
    settings, ids = _version_made_by_a_search(search_settings, raw_sample)
    clean = db.engine("clean", settings.databases)
    with clean.connect() as conn:  # the fixture's overlap really was dropped by CLEAN
        second = conn.execute(
            sa.text(f"SELECT count(*) FROM listings WHERE batch_id = {ids[1]}")
        ).scalar()
    assert second == 500
    before = _registry_state(settings)

    result = reproduce.reproduce(settings, 1)

    assert result.reproduced, result.differences
    assert result.data_hash_found == result.data_hash_expected
    assert result.data_hash_found == data.data_hash(data.training_rows(settings, ids))
    assert result.holdout_hash_found == result.holdout_hash_expected is not None
    assert [c.batch_id for c in result.batches] == ids
    assert all(c.rows_expected == c.rows_found is not None for c in result.batches)
    assert abs(result.rebuilt_rmsle - result.recorded_rmsle) <= 0.01 * result.recorded_rmsle
    assert result.median_relative_difference <= 0.01
    text = "\n".join(reproduce.describe(result))
    assert text.startswith("reproduced: ") and "holdout RMSLE" in text
    assert f"trained with {result.code_version_trained}" in text
    # Read-only and idempotent: no version, tag, alias or run added; the same answer again.
    assert reproduce.reproduce(settings, 1) == result
    assert _registry_state(settings) == before


def test_a_raw_batch_changed_after_training_is_named_with_both_hashes(search_settings, raw_sample):
    settings, ids = _version_made_by_a_search(search_settings, raw_sample)
    raw = db.engine("raw", settings.databases)
    with raw.begin() as conn:  # one price changed in the first batch's stored rows
        conn.execute(
            sa.text(
                f"UPDATE batch_rows SET price = '123456' WHERE batch_id = {ids[0]} "
                f"AND row_index = (SELECT min(row_index) FROM batch_rows WHERE batch_id = {ids[0]})"
            )
        )

    result = reproduce.reproduce(settings, 1)

    assert not result.reproduced
    first, second = result.batches
    assert first.differences() and not second.differences()
    assert first.rows_expected != first.rows_found
    changed = f"batch {ids[0]}'s rows in RAW changed: sha256 {first.rows_expected} when trained"
    assert changed in result.differences[0] and first.rows_found in result.differences[0]
    assert result.rebuilt_rmsle is None  # changed rows are not refitted on
    text = "\n".join(reproduce.describe(result))
    assert text.startswith("not reproduced: ") and f"batch {ids[0]}: " in text


def test_a_data_hash_that_does_not_match_the_record_is_said(search_settings, raw_sample):
    settings, _ = _version_made_by_a_search(search_settings, raw_sample)
    client = MlflowClient(settings.mlflow.mlflow_tracking_uri)
    client.set_model_version_tag(settings.mlflow.model_name, "1", lineage.DATA_HASH, "0" * 64)

    result = reproduce.reproduce(settings, 1)

    assert not result.reproduced
    assert all(not c.differences() for c in result.batches)  # RAW itself is unchanged
    assert result.differences == [
        f"the training rows rebuilt from RAW have data hash {result.data_hash_found}; the "
        f"version was trained on {'0' * 64}"
    ]
