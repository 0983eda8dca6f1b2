"""The dependency groups of pyproject.toml, as uv.lock resolves them: each service's group
resolves without the others (the images install one group each, docker/Dockerfile)."""

from __future__ import annotations

import pytest

from tests.helpers.local_run import installed_packages

# What each service must not carry (the issue: serving shipped Airflow, Celery, Streamlit...).
NOT_IN = {
    "serving": {"apache-airflow", "celery", "streamlit", "optuna", "optuna-dashboard", "flaml"},
    "datasource": {"apache-airflow", "celery", "streamlit", "optuna", "xgboost", "shap"},
    "ui": {"apache-airflow", "celery", "optuna", "optuna-dashboard", "xgboost"},
}
# And what it needs: the group is not empty by mistake.
NEEDS = {
    "serving": {"fastapi", "uvicorn", "mlflow-skinny", "xgboost", "lightgbm", "shap"},
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
    assert not packages & NOT_IN[group], f"{group} pulls {sorted(packages & NOT_IN[group])}"


def test_the_full_mlflow_server_is_only_in_the_tracking_group() -> None:
    assert "mlflow" not in exported("serving")
    assert "mlflow" in exported("tracking")


def test_the_airflow_group_carries_the_training() -> None:
    assert {"apache-airflow", "celery", "optuna", "xgboost", "lightgbm"} <= exported("airflow")
