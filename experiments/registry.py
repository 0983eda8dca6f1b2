"""The model registry: which version is production, and moving the alias."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from tasador.config import Settings


def production_version(mlflow_client: MlflowClient, settings: Settings) -> ModelVersion | None:
    """The version the production alias points at; None before the first promotion."""
    try:
        return mlflow_client.get_model_version_by_alias(
            settings.model_name, settings.production_alias
        )
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise
