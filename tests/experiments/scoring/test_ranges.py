"""A version's price ranges as data in its scoring artifact: stored, read back, or refused."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import calibration
from experiments.scoring import artifact, ranges
from tests.helpers.models import small_model


def _table() -> ranges.RangeTable:
    rng = np.random.default_rng(1)
    truth = np.exp(rng.normal(12, 1, 3_000))
    predicted = truth * np.exp(rng.normal(0, 0.3, 3_000))
    land = rng.random(3_000) < 0.2
    predicted[land] = truth[land] * np.exp(rng.normal(0, 1.0, land.sum()))
    table = calibration.calibrate(truth, predicted, land, "test rows")
    return table


@pytest.fixture(scope="module")
def folder(clean_sample: pd.DataFrame) -> Iterator[Path]:
    """A ridge model's artifact folder with ranges."""
    with tempfile.TemporaryDirectory() as where:
        path = Path(where) / artifact.FOLDER
        artifact.write(small_model("ridge", clean_sample), path, price_ranges=_table())
        yield path


def test_ranges_are_stored_and_read_back_as_they_were(folder: Path) -> None:
    table = _table()
    read = artifact.read(folder).ranges
    assert read is not None and read.coverages == table.coverages
    prices = np.array([50_000.0, 300_000.0, 2e6, 80_000.0])
    land = np.array([False, False, False, True])
    for coverage in table.coverages:
        np.testing.assert_allclose(
            read.bounds(prices, land, coverage), table.bounds(prices, land, coverage)
        )


def test_an_artifact_without_ranges_reads_with_none(clean_sample: pd.DataFrame) -> None:
    assert artifact.of_model(small_model("ridge", clean_sample)).ranges is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d["kinds"]["land"].update(highs=[[float("inf")] * 10] * 3),
        lambda d: d["kinds"]["houses"].update(lows=[[0.5] * 10]),
        lambda d: d["kinds"].pop("land"),
        lambda d: d.update(format=99),
    ],
)
def test_damaged_ranges_make_the_artifact_unreadable(folder: Path, tmp_path: Path, damage) -> None:
    copy = tmp_path / artifact.FOLDER
    copy.mkdir()
    for file in folder.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    stored = json.loads((copy / ranges.RANGE_FILE).read_text())
    damage(stored)
    (copy / ranges.RANGE_FILE).write_text(json.dumps(stored))
    with pytest.raises(artifact.ArtifactError, match=r"ranges\.json"):
        artifact.read(copy)


def test_a_coverage_not_calibrated_for_is_none_not_a_guess() -> None:
    table = _table()
    assert table.column(0.83) is None and table.column(0.8) == 6
    with pytest.raises(KeyError):
        table.bounds(np.array([1e5]), np.array([False]), 0.83)
