"""The scoring artifact holds a fitted pipeline as data only, for every family, with the prices
the pipeline gives; anything else is not written, or not read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from experiments import registry
from experiments.features import log_price_model
from experiments.scoring import artifact
from experiments.scoring.encoding import Unsupported
from tasador.core.columns import TARGET
from tests.helpers.models import FAMILY_NAMES, small_model


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_is_stored_as_data_with_the_pipelines_prices(
    family: str, clean_sample: pd.DataFrame, tmp_path: Path
) -> None:
    model = small_model(family, clean_sample)
    sample = registry.validation_sample(clean_sample.tail(50))
    folder = tmp_path / "scoring"
    artifact.write(model, folder, sample["listings"], clean_sample.drop(columns=[TARGET]).head(20))

    names = {path.name for path in folder.iterdir()}
    booster = artifact.BOOSTER_FILES.get(family)
    assert names == {artifact.META_FILE, artifact.ARRAYS_FILE, *([booster] if booster else [])}
    # No pickle (protocol 2 and later start with 0x80): JSON, a zip of arrays, booster text.
    assert not any(path.read_bytes().startswith(b"\x80") for path in folder.iterdir())
    with np.load(folder / artifact.ARRAYS_FILE, allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
    meta = json.loads((folder / artifact.META_FILE).read_text())
    assert meta["format"] == artifact.FORMAT and meta["family"] == family

    scoring = artifact.read(folder)
    assert scoring.family == family and len(scoring.probes) == artifact.PROBE_ROWS
    expected = artifact.pipeline_prices(model, sample["listings"])
    assert scoring.expected_validation is not None
    np.testing.assert_array_equal(scoring.expected_validation, expected)
    np.testing.assert_array_equal(
        scoring.expected_probes, artifact.pipeline_prices(model, scoring.probes)
    )
    assert (scoring.background is not None) == (family == "ridge")  # SHAP's reference


def test_a_model_of_another_shape_is_not_written(
    clean_sample: pd.DataFrame, tmp_path: Path
) -> None:
    from sklearn.linear_model import Lasso

    frame = clean_sample.head(500)
    model: Any = log_price_model(Lasso(alpha=0.1), "linear")
    model.fit(frame.drop(columns=[TARGET]), frame[TARGET].to_numpy())
    with pytest.raises(Unsupported, match="Lasso"):
        artifact.write(model, tmp_path / "scoring")
    broken = small_model("ridge", frame)
    broken.regressor_[-1].coef_[:] = np.nan  # scikit-learn refuses its NaN log prices
    with pytest.raises(Unsupported, match="fails to price listings"):
        artifact.write(broken, tmp_path / "scoring")


def test_an_artifact_of_another_format_or_with_objects_is_not_read(
    clean_sample: pd.DataFrame, tmp_path: Path
) -> None:
    folder = tmp_path / "scoring"
    artifact.write(small_model("ridge", clean_sample.head(500)), folder)
    meta_file = folder / artifact.META_FILE
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "format": artifact.FORMAT + 1}))
    with pytest.raises(artifact.ArtifactError, match="format"):
        artifact.read(folder)

    meta_file.write_text(json.dumps(meta))
    with np.load(folder / artifact.ARRAYS_FILE) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["coef"] = np.array([PickleFree()], dtype=object)  # an array that needs unpickling
    np.savez(folder / artifact.ARRAYS_FILE, **arrays)
    with pytest.raises(artifact.ArtifactError, match="allow_pickle"):
        artifact.read(folder)


class PickleFree:
    """Any object: an object array of it is stored pickled, which reading refuses."""
