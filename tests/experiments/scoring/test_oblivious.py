"""CatBoost's symmetric trees as data: the category tables give CatBoost's own split outcomes
for every value it saw, and trees that do not describe a model are not read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from experiments.families import FAMILIES
from experiments.features import log_price_model
from experiments.scoring import artifact
from experiments.scoring.encoding import CategoryTable, Unsupported
from experiments.scoring.oblivious import expanded
from tasador.core.columns import TARGET
from tests.helpers.models import small_model


@pytest.fixture(scope="module")
def catboost_model(clean_sample: pd.DataFrame) -> Any:
    return small_model("catboost", clean_sample)


def test_every_known_city_is_priced_as_catboost_prices_it(
    catboost_model: Any, clean_sample: pd.DataFrame
) -> None:
    scoring = artifact.of_model(catboost_model)
    tables = [b for b in scoring.blocks if isinstance(b, CategoryTable)]
    assert {"state", "city", "zip_code_3"} <= {b.column for b in tables}  # statistics used
    # Every listing of the sample keeps its fields; prices through the tables and the trees.
    frame = clean_sample.drop(columns=[TARGET]).head(1_000)
    matrix = artifact.encoded(scoring, frame)
    scores = np.full(len(frame), float(scoring.arrays["oblivious.bias"]))
    rows = np.arange(len(frame))
    x = matrix.astype(np.float32).astype(np.float64)
    for tree in expanded(scoring.arrays):
        node = np.zeros(len(frame), dtype=np.intp)
        while (tree.left[node] >= 0).any():
            inner = tree.left[node] >= 0
            v = x[rows, tree.feature[node]]
            right = np.where(np.isnan(v), tree.nan_right[node], v > tree.threshold[node])
            node = np.where(inner, np.where(right, tree.right[node], tree.left[node]), node)
        scores += tree.value[node]
    np.testing.assert_allclose(np.exp(scores), catboost_model.predict(frame), rtol=1e-9)


def test_statistics_of_column_combinations_are_not_mirrored(clean_sample: pd.DataFrame) -> None:
    catboost = FAMILIES["catboost"]
    settings = {**catboost.runtime(1, 0), "max_ctr_complexity": 3, "iterations": 60}
    model: Any = log_price_model(catboost.estimator(**settings), "catboost")
    frame = clean_sample.head(2_000)
    model.fit(frame.drop(columns=[TARGET]), frame[TARGET].to_numpy())
    with pytest.raises(Unsupported, match="several features"):
        artifact.of_model(model)


@pytest.mark.parametrize(
    ("name", "broken"),
    [
        ("oblivious.threshold", lambda a: a[:-1]),
        ("oblivious.feature", lambda a: a + 1_000),
        ("oblivious.depth", lambda a: a + 1),
    ],
)
def test_broken_trees_are_not_read(
    catboost_model: Any, tmp_path: Path, name: str, broken: Any
) -> None:
    folder = tmp_path / "scoring"
    artifact.write(catboost_model, folder)
    path = folder / artifact.ARRAYS_FILE
    with np.load(path, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    arrays[name] = broken(arrays[name])
    np.savez(path, allow_pickle=False, **arrays)
    with pytest.raises(artifact.ArtifactError, match="oblivious"):
        artifact.read(folder)
