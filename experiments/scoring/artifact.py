"""A registered version's scoring artifact: its model as data only, the one thing serving loads.

Why: the logged MLflow model is a pickled scikit-learn pipeline, and unpickling runs whatever
code the pickle names, so whoever can write the artifact store could run code in serving. This
artifact holds nothing that runs when read; it is a folder (``FOLDER``, in the logged model's
artifacts, next to the pyfunc model MLflow's own tools still use) of:

- ``scoring.json``: the format version, the family, the encoded feature names, the encoding step
  compiled to blocks (experiments.scoring.encoding), and the probe listings;
- ``arrays.npz``: every number (block tables and constants, a forest's trees, a ridge's
  coefficients, a linear model's encoded SHAP background, the expected prices), read back with
  ``allow_pickle=False``;
- a booster in its library's own format: XGBoost's JSON (``booster.json``), LightGBM's model
  text (``booster.txt``). CatBoost's symmetric trees are arrays instead, over a matrix whose
  category tables say what the model does with each value (experiments.scoring.oblivious):
  serving scores them without the library;
- ``ranges.json``, when registration calibrated them: the version's price ranges
  (experiments.scoring.ranges); a version registered before ranges has none and still serves.

**Expected prices.** At registration the pipeline itself prices the probe listings (drawn from
the encoders' vocabulary: known and unseen values, blanks, edge values) and the version's
validation sample; serving prices both with the artifact before the version answers and refuses
it when they differ (serving.models). That check guards the one mirror of training code serving
keeps (``ListingFrame``'s derived columns, serving.fast_path) and the artifact's faithfulness.

A pipeline of another shape raises :class:`Unsupported` (the version is then registered without
an artifact, and serving refuses it, saying so).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.pipeline import Pipeline

from experiments.features import ListingFrame
from experiments.inputs import model_input
from experiments.scoring import ranges
from experiments.scoring.encoding import (
    Block,
    Unsupported,
    blocks_data,
    blocks_from_data,
    compile_blocks,
    vocabulary,
)
from experiments.scoring.oblivious import check_trees, compile_catboost
from tasador.core.columns import STATUSES

FORMAT = 1
FOLDER = "scoring"  # in the logged model's artifacts
META_FILE = "scoring.json"
ARRAYS_FILE = "arrays.npz"
BOOSTER_FILES = {"xgboost": "booster.json", "lightgbm": "booster.txt"}
PROBE_ROWS = 256
# The estimator classes training builds (experiments.families), by family name.
ESTIMATORS = {
    "xgboost.sklearn.XGBRegressor": "xgboost",
    "lightgbm.sklearn.LGBMRegressor": "lightgbm",
    "sklearn.ensemble._forest.RandomForestRegressor": "random_forest",
    "sklearn.linear_model._ridge.Ridge": "ridge",
    "catboost.core.CatBoostRegressor": "catboost",
}
# A forest's trees, concatenated: scikit-learn's per-node arrays under these names.
FOREST_NODES = (
    "children_left",
    "children_right",
    "feature",
    "threshold",
    "missing_go_to_left",
    "weighted_n_node_samples",
)


class ArtifactError(Exception):
    """A folder that is not a scoring artifact this code reads."""


@dataclass(frozen=True)
class Artifact:
    """A scoring artifact read back: everything serving scores and explains with."""

    family: str  # xgboost, lightgbm, random_forest, ridge, catboost
    features: list[str]  # the encoded feature names, in the matrix's column order
    blocks: list[Block]
    width: int
    arrays: dict[str, np.ndarray]  # the estimator's (``forest.*``, ``oblivious.*``...) and the rest
    booster: Any  # xgboost.Booster or lightgbm.Booster; None for the other families
    probes: list[dict[str, Any]]  # listings as a client sends them
    expected_probes: np.ndarray  # the pipeline's prices on ``probes``
    expected_validation: np.ndarray | None  # on the validation sample's listings, in order
    ranges: ranges.RangeTable | None = None  # None: registered before versions had ranges

    @property
    def background(self) -> np.ndarray | None:
        """A linear model's SHAP background: training rows, encoded."""
        return self.arrays.get("background")


def estimator_kind(estimator: Any) -> str:
    """``module.Class`` of a fitted estimator."""
    return f"{type(estimator).__module__}.{type(estimator).__name__}"


def _parts(model: Any) -> tuple[Pipeline, ColumnTransformer, Any, str]:
    """The fitted pipeline, its encoding step, its estimator and family; Unsupported else."""
    if type(model) is not TransformedTargetRegressor or model.transformer is not None:
        raise Unsupported(f"model {type(model).__name__} (expected a log-price regressor)")
    if model.inverse_func is not np.exp:
        raise Unsupported("a target transform other than log and exp")
    pipeline = model.regressor_
    if type(pipeline) is not Pipeline or len(pipeline.steps) != 3:
        raise Unsupported("regressor is not a listing -> encode -> estimator pipeline")
    (_, listing), (_, encode), (_, estimator) = pipeline.steps
    if type(listing) is not ListingFrame or type(encode) is not ColumnTransformer:
        raise Unsupported("pipeline steps are not ListingFrame then ColumnTransformer")
    family = ESTIMATORS.get(estimator_kind(estimator))
    if family is None:
        raise Unsupported(f"estimator {estimator_kind(estimator)}")
    return pipeline, encode, estimator, family


def _estimator_arrays(estimator: Any, family: str) -> dict[str, np.ndarray]:
    if family == "ridge":
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        if coef.ndim != 1:
            raise Unsupported("a linear model of several outputs")
        return {"coef": coef, "intercept": np.asarray(float(estimator.intercept_))}
    if family != "random_forest":
        return {}
    if estimator.n_outputs_ != 1:
        raise Unsupported("a forest of several outputs")
    trees = [tree.tree_ for tree in estimator.estimators_]
    arrays = {
        f"forest.{name}": np.concatenate([np.asarray(getattr(t, name)) for t in trees])
        for name in FOREST_NODES
    }
    arrays["forest.value"] = np.concatenate([t.value[:, 0, 0] for t in trees])
    arrays["forest.node_count"] = np.asarray([t.node_count for t in trees], dtype=np.int64)
    arrays["forest.max_depth"] = np.asarray([t.max_depth for t in trees], dtype=np.int64)
    return arrays


def _save_booster(estimator: Any, family: str, path: Path) -> None:
    if family == "xgboost":
        booster = estimator.get_booster()
        best = getattr(estimator, "best_iteration", None)  # the trees its predict uses
        (booster if best is None else booster[: best + 1]).save_model(str(path))
    else:  # LightGBM saves the trees its predict uses (the best iteration, if any)
        path.write_text(estimator.booster_.model_to_string())


def pipeline_prices(model: Any, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The fitted pipeline's own prices for listings as a client sends them."""
    return np.asarray(model.predict(model_input(records)), dtype=np.float64).ravel()


def _expected(model: Any, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    try:
        return pipeline_prices(model, records)
    except ValueError as exc:  # scikit-learn refuses a NaN log price, for one
        raise Unsupported(f"a pipeline that fails to price listings ({exc})") from exc


def write(
    model: Any,
    folder: Path,
    validation: Sequence[Mapping[str, Any]] | None = None,
    background: pd.DataFrame | None = None,
    price_ranges: ranges.RangeTable | None = None,
) -> None:
    """``model``'s scoring artifact in ``folder`` (created). ``validation``: the listings of
    the version's validation sample; ``background``: its SHAP background rows (model input);
    ``price_ranges``: its calibrated price ranges (experiments.calibration)."""
    pipeline, encode, estimator, family = _parts(model)
    trees: dict[str, np.ndarray] = {}
    if family == "catboost":
        blocks, width, features, trees = compile_catboost(encode, estimator)
    else:
        blocks, width = compile_blocks(encode)
        features = [str(name) for name in encode.get_feature_names_out()]
    described, arrays = blocks_data(blocks)
    arrays.update(trees)
    probes = probe_records(vocabulary(blocks))
    arrays["expected.probes"] = _expected(model, probes)
    if validation is not None:
        arrays["expected.validation"] = _expected(model, validation)
    arrays.update(_estimator_arrays(estimator, family))
    if family == "ridge" and background is not None and not background.empty:
        encoded = pipeline[:-1].transform(model_input(background))
        arrays["background"] = np.asarray(encoded, dtype=np.float64)
    meta = {
        "format": FORMAT,
        "family": family,
        "features": features,
        "width": width,
        "blocks": described,
        "probes": probes,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).write_text(json.dumps(meta))
    np.savez(folder / ARRAYS_FILE, allow_pickle=False, **arrays)
    if family in BOOSTER_FILES:
        _save_booster(estimator, family, folder / BOOSTER_FILES[family])
    if price_ranges is not None:
        ranges.write(price_ranges, folder)


def _load_booster(family: str, path: Path) -> Any:
    if family == "xgboost":
        import xgboost

        booster = xgboost.Booster(model_file=str(path))
        booster.set_param({"nthread": 1})  # one thread per call: see serving.fast_path
        return booster
    import lightgbm

    return lightgbm.Booster(model_file=str(path))


def read(folder: Path) -> Artifact:
    """The artifact in ``folder``; ArtifactError when it is not one this code reads."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise ArtifactError(f"scoring artifact format {meta.get('format')!r}, not {FORMAT}")
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        family = str(meta["family"])
        if family not in ESTIMATORS.values():
            raise ArtifactError(f"scoring artifact of unknown family {family!r}")
        if family == "catboost":
            check_trees(arrays, int(meta["width"]))
        booster = None
        if family in BOOSTER_FILES:
            booster = _load_booster(family, folder / BOOSTER_FILES[family])
        return Artifact(
            family=family,
            features=[str(name) for name in meta["features"]],
            blocks=blocks_from_data(meta["blocks"], arrays),
            width=int(meta["width"]),
            arrays=arrays,
            booster=booster,
            probes=list(meta["probes"]),
            expected_probes=arrays["expected.probes"],
            expected_validation=arrays.get("expected.validation"),
            ranges=ranges.read(folder),
        )
    except ArtifactError:
        raise
    except Exception as exc:  # unreadable, incomplete or of another shape: not servable
        raise ArtifactError(f"unreadable scoring artifact ({type(exc).__name__}: {exc})") from exc


def of_model(
    model: Any,
    background: pd.DataFrame | None = None,
    price_ranges: ranges.RangeTable | None = None,
) -> Artifact:
    """The artifact registration would store for ``model``, written and read back (benchmarks
    and tests: serving reads only what the registry holds)."""
    with tempfile.TemporaryDirectory() as folder:
        write(model, Path(folder) / FOLDER, background=background, price_ranges=price_ranges)
        return read(Path(folder) / FOLDER)


def encoded(scoring: Artifact, frame: pd.DataFrame) -> np.ndarray:
    """The matrix ``scoring``'s estimator takes, for listings of the model's input frame
    (serving fills it from validated listings instead: serving.fast_path)."""
    derived = ListingFrame().transform(model_input(frame))
    columns = {c: derived[c].to_numpy() for c in derived.columns}
    out = np.empty((len(frame), scoring.width), dtype=np.float64)
    for block in scoring.blocks:
        block.fill(columns, out)
    return out


def probe_records(known: dict[str, list[Any]], n: int = PROBE_ROWS) -> list[dict[str, Any]]:
    """Listings as a client sends them, mixing known and unseen values, blanks and edge values,
    reproducibly (``known``: the encoders' values per derived column)."""
    rng = np.random.default_rng(0)

    def pick(column: str, unseen: Any) -> Any:
        values = known.get(column) or [unseen]
        roll = rng.random()
        if roll < 0.1:
            return None
        return unseen if roll < 0.2 else values[rng.integers(len(values))]

    def number(low: float, high: float) -> float | None:
        return None if rng.random() < 0.15 else float(rng.uniform(low, high))

    records: list[dict[str, Any]] = [{}]
    for _ in range(n - 1):
        state_city = pick("city", "Nowhere|atlantis")
        state, city = state_city.split("|", 1) if state_city else (None, None)
        zip_code = pick("zip_code", "99999")
        broker = pick("brokered_by", "123456789")
        bed = number(0, 8)
        sold = (
            None
            if rng.random() < 0.3
            else date(1990, 1, 1) + timedelta(int(rng.integers(0, 12_000)))
        )
        records.append(
            {
                "brokered_by": None if broker is None else int(broker),
                "status": None if rng.random() < 0.1 else STATUSES[rng.integers(len(STATUSES))],
                "bed": None if bed is None else round(bed),
                "bath": None if bed is None else round(bed / 2),
                "acre_lot": number(0, 5),
                "city": city.title() if city else None,
                "state": pick("state", "Atlantis") if state in (None, "?") else state,
                "zip_code": zip_code,
                "house_size": number(300, 6_000),
                "prev_sold_date": None if sold is None else sold.isoformat(),
            }
        )
    return records
