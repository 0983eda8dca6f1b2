"""The model registry: logging a model version, finding and loading versions, the alias.

**Serialization.** Models are logged with the sklearn flavour in ``cloudpickle`` format, for
training, the champion step and MLflow's own tools. MLflow 3.17 defaults to skops, which refuses
our pipeline outright (measured: "skops does not support custom functions or classes", for
xgboost, lightgbm and ridge pipelines alike). Loading a pickle runs the code it names, so only
processes that trust the artifact store load it (they set ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``,
``tasador.core.process``); serving never does.

**Scoring artifact.** Every version also stores its model as data only (experiments.scoring.
artifact, in the logged model's ``scoring/`` folder), with the prices the pipeline gave on the
validation sample and on probe listings: the one thing serving downloads
(:func:`download_scoring`). A model that cannot be made one (not one of our pipelines) is
registered without it, the version tag ``SCORING_TAG`` saying why, and serving refuses it.

**Signature.** Every input column is optional and typed as CLEAN types it (see
``experiments.inputs.INPUT_TYPES``); MLflow enforces it strictly (ints are not doubles, text
is not a date), so pyfunc callers pass raw fields through ``experiments.inputs.model_input``
first. Extra columns (``batch_id``...) are ignored with a warning.

**SHAP background.** Every version stores, next to its model files (in the logged model's
artifacts, ``BACKGROUND_FILE``), a sample of the training rows it learnt from: the reference
SHAP explanations are relative to (experiments.explain). The model-change report reads it back
with :func:`load_background`; the scoring artifact holds it encoded, for serving's ``/explain``.

**Validation sample.** Versions trained by the champion/challenger step also store
``VALIDATION_FILE``: up to ``VALIDATION_ROWS`` shared-holdout rows as a client sends them to
serving, with their prices. Serving scores them before a version answers anything and compares
their RMSLE with the version's registered holdout RMSLE (serving.validation), and its prices with
those the pipeline gave (stored in the scoring artifact).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PyFuncModel
from mlflow.types.schema import ColSpec, Schema

from experiments.inputs import INPUT_COLUMNS, INPUT_TYPES, model_input
from tasador.core import timings
from tasador.core.columns import TARGET
from tasador.core.config import MlflowSettings, Settings
from tasador.core.errors import NotConfigured

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # a type only: the UI reads the registry without scikit-learn installed
    from sklearn.base import RegressorMixin

    from experiments.scoring.ranges import RangeTable

# Tags on model versions (besides the lineage tags of tasador.core.lineage).
FAMILY_TAG = "family"
PARAMS_TAG = "optuna_params"  # JSON of the trial params that built the version (warm start)
PROMOTED_TAG = "promoted"  # "True" / "False": the champion/challenger verdict
DECIDED_AT_TAG = "decided_at"  # ISO time of that verdict
# The promotion verdict in one sentence (the key predates the name, kept for old versions).
PROMOTION_VERDICT_TAG = "decision"
SHAP_SUMMARY_TAG = "shap_summary"  # what changed, in one sentence
# The latest candidate, promoted or not (experiments.leaderboard sets it; serving shadows it).
CHALLENGER_ALIAS = "challenger"

SERIALIZATION = "cloudpickle"
_REQUIREMENTS = (
    "scikit-learn",
    "xgboost-cpu",
    "lightgbm",
    "catboost",
    "pandas",
    "numpy",
    "scipy",
    "cloudpickle",
)
ARTIFACT_NAME = "model"
BACKGROUND_FILE = "shap_background.json"  # in the logged model's artifacts: training rows
VALIDATION_FILE = "validation_sample.json"  # there too: holdout listings and their prices
VALIDATION_ROWS = 256
SCORING_TAG = "scoring_artifact"  # "stored", or why the version has none


def tracking_uri(mlflow_settings: MlflowSettings) -> str:
    """The MLflow tracking server's URI (entry points fill it in when it is unset)."""
    if mlflow_settings.mlflow_tracking_uri is None:
        raise NotConfigured(
            "TASADOR_MLFLOW_TRACKING_URI is not set (the `tasador` commands start an embedded "
            "MLflow server for it; library code does not)"
        )
    return mlflow_settings.mlflow_tracking_uri


def connect(settings: Settings) -> MlflowClient:
    """A client of the tracking server and registry; also points MLflow's fluent API (used to
    log models) at the same server."""
    uri = tracking_uri(settings.mlflow)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def signature() -> ModelSignature:
    """The model signature: the listing columns as optional inputs, one double (price) out."""
    return ModelSignature(
        inputs=Schema([ColSpec(INPUT_TYPES[c], c, required=False) for c in INPUT_COLUMNS]),
        outputs=Schema([ColSpec("double")]),
    )


def requirements() -> list[str]:
    """Pinned to what trained the model (skips MLflow's slow requirement inference)."""
    return [f"{name}=={installed_version(name)}" for name in _REQUIREMENTS]


@timings.step("register")  # benchmarks/loop.py times it
def log_and_register(
    model: RegressorMixin,
    example: pd.DataFrame,
    mlflow_settings: MlflowSettings,
    run_id: str,
    tags: Mapping[str, str],
    background: pd.DataFrame | None = None,
    validation: pd.DataFrame | None = None,
    price_ranges: RangeTable | None = None,
) -> ModelVersion:
    """Log ``model`` into run ``run_id`` and register it as a new version with ``tags``.

    ``background``: the training rows SHAP explains it against (experiments.explain.
    background_rows), stored with the model; ``example`` when not given. ``validation``:
    holdout rows with their price, stored as the version's validation sample (none when not
    given). ``price_ranges``: its calibrated price ranges (experiments.calibration), stored in
    its scoring artifact (none when not given: it serves prices without ranges)."""
    client = MlflowClient()
    # The fluent API refuses a run of another experiment than this process's active one.
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(
            sk_model=model,
            name=ARTIFACT_NAME,
            serialization_format=SERIALIZATION,
            signature=signature(),
            input_example=model_input(example),
            pip_requirements=requirements(),
            registered_model_name=mlflow_settings.model_name,
        )
    number = str(info.registered_model_version)
    rows = model_input(example if background is None else background)
    _log_text(
        client, info.model_id, BACKGROUND_FILE, rows.to_json(orient="records", date_format="iso")
    )
    sample = None if validation is None else validation_sample(validation)
    if sample is not None:
        _log_text(client, info.model_id, VALIDATION_FILE, json.dumps(sample))
    scoring = _log_scoring(client, info.model_id, model, sample, rows, price_ranges)
    for key, value in {**tags, SCORING_TAG: scoring}.items():
        client.set_model_version_tag(mlflow_settings.model_name, number, key, str(value))
    return client.get_model_version(mlflow_settings.model_name, number)


def _log_text(client: MlflowClient, model_id: str, name: str, text: str) -> None:
    """One file ``name`` in the logged model's artifacts."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text)
        client.log_model_artifact(model_id, str(path))


def _log_scoring(
    client: MlflowClient,
    model_id: str,
    model: RegressorMixin,
    sample: dict[str, list[Any]] | None,
    background: pd.DataFrame | None,
    price_ranges: RangeTable | None = None,
) -> str:
    """The scoring artifact in the logged model's artifacts; "stored", or why there is none."""
    # Here, not at the top: it compiles scikit-learn pipelines, and the UI reads this module
    # in an environment without scikit-learn.
    from experiments.scoring import artifact
    from experiments.scoring.encoding import Unsupported

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / artifact.FOLDER
        try:
            listings = None if sample is None else sample["listings"]
            artifact.write(model, path, listings, background, price_ranges)
        except Unsupported as exc:  # not one of our pipelines: registered, never served
            logger.warning("no scoring artifact for model %s: %s", model_id, exc)
            return f"none: {exc} is not compiled"
        client.log_model_artifacts(model_id, str(path), artifact.FOLDER)
    return "stored"


def store_scoring(
    mlflow_client: MlflowClient, mlflow_settings: MlflowSettings, version: ModelVersion
) -> str:
    """Store the scoring artifact of a ``version`` registered without one (before versions had
    them), made from its pickled model: only where pickles are trusted, as training (`tasador
    scoring-artifacts`), never in serving. Returns what its ``SCORING_TAG`` now says."""
    model_id = model_id_of(version)
    if model_id is None:
        return "none: no logged model to read"
    model = load_version(mlflow_settings, version.version).get_raw_model()
    sample = load_validation(mlflow_client, version)
    status = _log_scoring(
        mlflow_client, model_id, model, sample, load_background(mlflow_client, version)
    )
    mlflow_client.set_model_version_tag(
        mlflow_settings.model_name, str(version.version), SCORING_TAG, status
    )
    return status


def _listing(row: Mapping[str, Any]) -> dict[str, Any]:
    """A model-input row as a client sends it to serving: JSON values, ids as numbers."""
    out: dict[str, Any] = {}
    for column in INPUT_COLUMNS:
        value = row[column]
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            out[column] = None
        elif column == "prev_sold_date":
            out[column] = pd.Timestamp(value).date().isoformat()
        elif column in ("brokered_by", "street"):
            out[column] = int(value)  # digit text in the model's input, a number on the wire
        else:
            out[column] = value.item() if hasattr(value, "item") else value
    return out


def validation_sample(rows: pd.DataFrame) -> dict[str, list[Any]]:
    """Holdout rows (with ``price``) as the validation sample: listings and their prices."""
    listings = model_input(rows).to_dict(orient="records")
    return {
        "listings": [_listing(r) for r in listings],
        "prices": [float(p) for p in rows[TARGET]],
    }


def model_id_of(version: ModelVersion) -> str | None:
    """The logged model (MLflow 3 ``model_id``) a version was registered from: the registry
    does not always fill ``model_id`` in (3.17's server did not), its ``source`` names it."""
    if version.model_id:
        return str(version.model_id)
    source = version.source or ""
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def _download(
    mlflow_client: MlflowClient, version: ModelVersion, name: str, folder: Path
) -> Path | None:
    """The file or folder ``name`` stored with ``version``'s logged model, downloaded into
    ``folder``; None when there is none. Nothing else of the logged model is downloaded."""
    model_id = model_id_of(version)
    if not model_id:
        return None
    location = mlflow_client.get_logged_model(model_id).artifact_location.rstrip("/")
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{location}/{name}", dst_path=str(folder)
        )
    except (MlflowException, OSError):
        return None  # no such file: an older version
    return Path(local)


def download_scoring(
    mlflow_client: MlflowClient, version: ModelVersion, folder: Path
) -> Path | None:
    """``version``'s scoring artifact (a folder) downloaded into ``folder``; None when the
    version has none."""
    from experiments.scoring import artifact  # as in _log_scoring: scikit-learn

    return _download(mlflow_client, version, artifact.FOLDER, folder)


def _stored_json(mlflow_client: MlflowClient, version: ModelVersion, name: str) -> Any:
    """The JSON file ``name`` stored with ``version``'s logged model; None when there is none."""
    with tempfile.TemporaryDirectory() as folder:
        local = _download(mlflow_client, version, name, Path(folder))
        return None if local is None else json.loads(local.read_text())


def load_background(mlflow_client: MlflowClient, version: ModelVersion) -> pd.DataFrame | None:
    """The SHAP background stored with ``version`` (model input frame); None when the version
    predates it or was registered by other means."""
    records = _stored_json(mlflow_client, version, BACKGROUND_FILE)
    return model_input(records) if records else None


def load_validation(
    mlflow_client: MlflowClient, version: ModelVersion
) -> dict[str, list[Any]] | None:
    """The validation sample stored with ``version`` (see :func:`validation_sample`); None when
    the version has none."""
    sample = _stored_json(mlflow_client, version, VALIDATION_FILE)
    return sample if isinstance(sample, dict) and sample.get("listings") else None


def versions_of_run(
    mlflow_client: MlflowClient, mlflow_settings: MlflowSettings, run_id: str
) -> list[ModelVersion]:
    """The versions of the configured model registered from run ``run_id``."""
    return [
        v
        for v in mlflow_client.search_model_versions(f"run_id = '{run_id}'")
        if v.name == mlflow_settings.model_name
    ]


def production_version(mlflow_client: MlflowClient, settings: Settings) -> ModelVersion | None:
    """The version the production alias points at; None before the first promotion."""
    return aliased_version(mlflow_client, settings.mlflow, settings.mlflow.production_alias)


def aliased_version(
    mlflow_client: MlflowClient, mlflow_settings: MlflowSettings, alias: str
) -> ModelVersion | None:
    """The version ``alias`` points at; None when the alias (or the model) does not exist."""
    try:
        return mlflow_client.get_model_version_by_alias(mlflow_settings.model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def load_version(mlflow_settings: MlflowSettings, version: str | int) -> PyFuncModel:
    """A registered version by number (not alias, which may move while we use it), unpickled:
    for training and the champion step only, never serving (see the module doc).

    ``.predict`` takes :func:`model_input` frames; ``.get_raw_model()`` is the sklearn model.
    """
    return cast(
        PyFuncModel, mlflow.pyfunc.load_model(f"models:/{mlflow_settings.model_name}/{version}")
    )


def set_production(
    mlflow_client: MlflowClient, mlflow_settings: MlflowSettings, version: str | int
) -> None:
    """Point the production alias at ``version``: one call, so serving sees old or new."""
    mlflow_client.set_registered_model_alias(
        mlflow_settings.model_name, mlflow_settings.production_alias, str(version)
    )
