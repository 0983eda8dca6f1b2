"""Settings in groups, still read from the flat TASADOR_* variables the deployment sets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from tasador.core.config import GROUPS, SearchSettings, Settings, settings_env

# Every variable Tasador reads (as .env.example and docker-compose.yml set them), a value other
# than its default, and the group it lands in (None: Settings itself).
VARIABLES: dict[str, tuple[str, str | None]] = {
    "TASADOR_STATE_DIR": ("/srv/tasador-state", None),
    "TASADOR_TIMINGS_FILE": ("/tmp/timings.jsonl", None),
    "TASADOR_RAW_DB_URL": ("postgresql://u:p@raw:5432/raw", "databases"),
    "TASADOR_CLEAN_DB_URL": ("postgresql://u:p@clean:5432/clean", "databases"),
    "TASADOR_OPTUNA_STORAGE_URL": ("postgresql://u:p@optuna:5432/optuna", "databases"),
    "TASADOR_MLFLOW_BACKEND_URL": ("postgresql://u:p@mlflow:5432/mlflow", "databases"),
    "TASADOR_MLFLOW_TRACKING_URI": ("http://mlflow:5000", "mlflow"),
    "TASADOR_MLFLOW_ARTIFACTS_DESTINATION": ("s3://mlflow/", "mlflow"),
    "TASADOR_MODEL_NAME": ("other-model", "mlflow"),
    "TASADOR_PRODUCTION_ALIAS": ("live", "mlflow"),
    "TASADOR_EXPERIMENT_NAME": ("other-experiment", "mlflow"),
    "TASADOR_DATA_API_URL": ("http://datasource:8001", "data_api"),
    "TASADOR_GROUP_NUMBER": ("3", "data_api"),
    "TASADOR_DAY": ("Wednesday", "data_api"),
    "TASADOR_API_TIMEOUT_S": ("12.5", "data_api"),
    "TASADOR_API_MAX_RETRIES": ("7", "data_api"),
    "TASADOR_API_BACKOFF_S": ("0.25", "data_api"),
    "TASADOR_API_MAX_RESPONSE_BYTES": ("2048", "data_api"),
    "TASADOR_INGEST_SCHEDULE": ("@hourly", "data_api"),
    "TASADOR_DATASOURCE_SCENARIO": ("drift-zoo", "datasource"),
    "TASADOR_DATASOURCE_SCALE": ("0.5", "datasource"),
    "TASADOR_DATASOURCE_CSV": ("/data/realtor-data.csv", "datasource"),
    "TASADOR_DATASOURCE_SEED": ("7", "datasource"),
    "TASADOR_DRIFT_PSI_THRESHOLD": ("0.3", "drift"),
    "TASADOR_DRIFT_P_VALUE": ("0.05", "drift"),
    "TASADOR_DRIFT_KS_MIN_STATISTIC": ("0.2", "drift"),
    "TASADOR_DRIFT_UNSEEN_SHARE": ("0.1", "drift"),
    "TASADOR_DRIFT_MODEL_ERROR_RATIO": ("1.5", "drift"),
    "TASADOR_DRIFT_SAMPLE_ROWS": ("2000", "drift"),
    "TASADOR_DRIFT_MODEL_ROWS": ("300", "drift"),
    "TASADOR_DECIDE_MIN_CLEAN_ROWS": ("20", "drift"),
    "TASADOR_LIVE_MIN_ROWS": ("500", "drift"),
    "TASADOR_LIVE_SCHEDULE": ("@daily", "drift"),
    "TASADOR_SEARCH_SPACES_DIR": ("/opt/tasador/search_spaces", "search"),
    "TASADOR_SEARCH_TRIALS": ("9", "search"),
    "TASADOR_SEARCH_WORKERS": ("3", "search"),
    "TASADOR_SEARCH_TIMEOUT_S": ("30", "search"),
    "TASADOR_SEARCH_TRIAL_TIMEOUT_S": ("6", "search"),
    "TASADOR_SEARCH_CV_FOLDS": ("4", "search"),
    "TASADOR_SEARCH_SAMPLE_ROWS": ("1000", "search"),
    "TASADOR_SEARCH_THREADS": ("2", "search"),
    "TASADOR_SEARCH_SEED": ("5", "search"),
    "TASADOR_SEARCH_SAMPLER": ("random", "search"),
    "TASADOR_SEARCH_HEARTBEAT_S": ("3", "search"),
    "TASADOR_SEARCH_GRACE_S": ("9", "search"),
    "TASADOR_SEARCH_MAX_RETRIES": ("1", "search"),
    "TASADOR_SHAP_SAMPLE_ROWS": ("40", "search"),
    "TASADOR_REFIT_SAMPLE_ROWS": ("5000", "search"),
    "TASADOR_RANGE_FOLDS": ("3", "search"),
    "TASADOR_REPRODUCE_TOLERANCE": ("0.02", "search"),
    "TASADOR_PROMOTION_MARGIN": ("0.05", "promotion"),
    "TASADOR_PROMOTION_CONFIDENCE": ("0.9", "promotion"),
    "TASADOR_PROMOTION_BOOTSTRAP_DRAWS": ("500", "promotion"),
    "TASADOR_PROMOTION_SEGMENT_LIMIT": ("0.2", "promotion"),
    "TASADOR_PROMOTION_MIN_SEGMENT_ROWS": ("30", "promotion"),
    "TASADOR_PROMOTION_MIN_SHADOW_ROWS": ("10", "promotion"),
    "TASADOR_SERVING_POLL_S": ("0.5", "serving"),
    "TASADOR_SERVING_FIRST_LOAD_S": ("30", "serving"),
    "TASADOR_SERVING_VALIDATION_TOLERANCE": ("0.2", "serving"),
    "TASADOR_SERVING_WORKERS": ("2", "serving"),
    "TASADOR_SERVING_MAX_ROWS": ("100", "serving"),
    "TASADOR_SERVING_LOG_BUFFER_ROWS": ("1000", "serving"),
    "TASADOR_SERVING_LOG_FLUSH_S": ("0.2", "serving"),
    "TASADOR_SERVING_LOG_SPOOL_MAX_BYTES": ("8192", "serving"),
    "TASADOR_SERVING_SHUTDOWN_S": ("5", "serving"),
    "TASADOR_SERVING_MAX_BODY_BYTES": ("4096", "serving"),
    "TASADOR_SERVING_MAX_EXPLAINS": ("4", "serving"),
    "TASADOR_SERVING_SHADOW_SHARE": ("0.5", "serving"),
    "TASADOR_SERVING_API_KEY": ("s3cr3t-key", "serving"),
    "TASADOR_SERVING_RANGE_COVERAGE": ("0.9", "serving"),
    "TASADOR_SERVING_API_URL": ("http://serving:8000", "ui"),
    "TASADOR_MLFLOW_PUBLIC_URL": ("http://localhost:5000", "ui"),
    "TASADOR_OPTUNA_DASHBOARD_URL": ("http://localhost:8081", "ui"),
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No TASADOR_* variable from the caller's environment, and no .env in the working dir."""
    for key in [k for k in os.environ if k.upper().startswith("TASADOR_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def _is(read: Any, text: str) -> bool:
    """Whether a value read is what the variable says (numbers compared as numbers)."""
    if isinstance(read, int | float):
        return read == float(text)
    return (read.get_secret_value() if isinstance(read, SecretStr) else str(read)) == text


def test_the_groups_hold_exactly_the_variables() -> None:
    names = {f"TASADOR_{name.upper()}" for name in Settings.flat_fields()}
    assert names == set(VARIABLES)
    for group, model in GROUPS.items():
        wanted = {v for v, (_, g) in VARIABLES.items() if g == group}
        assert {f"TASADOR_{name.upper()}" for name in model.model_fields} == wanted, group


def test_every_variable_is_read_into_its_group(clean_env: pytest.MonkeyPatch) -> None:
    for variable, (value, _) in VARIABLES.items():
        clean_env.setenv(variable, value)
    settings = Settings(_env_file=None)
    for variable, (value, group) in VARIABLES.items():
        name = variable.removeprefix("TASADOR_").lower()
        holder = settings if group is None else getattr(settings, group)
        read = getattr(holder, name)
        assert _is(read, value), variable
        assert settings.flat()[name] == read
        assert read != Settings.flat_fields()[name].default, f"{variable} kept its default"


def test_names_are_read_whatever_their_case(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("tasador_search_trials", "3")
    assert Settings(_env_file=None).search.search_trials == 3


def test_dotenv_is_read_below_the_environment_and_can_be_switched_off(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "TASADOR_SEARCH_TRIALS=7\nTASADOR_SERVING_POLL_S=2.5\nOTHER_THING=1\n"
    )
    clean_env.setenv("TASADOR_SERVING_POLL_S", "0.5")
    from_files = Settings()
    assert from_files.search.search_trials == 7
    assert from_files.serving.serving_poll_s == 0.5  # the environment wins over .env
    assert Settings(_env_file=tmp_path / ".env").search.search_trials == 7
    assert Settings(_env_file=None).search.search_trials == 40


def test_flat_keywords_build_settings_and_beat_the_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("TASADOR_SEARCH_TRIALS", "9")
    clean_env.setenv("TASADOR_SEARCH_WORKERS", "3")
    settings = Settings(
        state_dir=tmp_path, raw_db_url="postgresql://x/raw", search_trials=2, _env_file=None
    )
    assert settings.state_dir == tmp_path
    assert settings.databases.raw_db_url == SecretStr("postgresql://x/raw")
    assert (settings.search.search_trials, settings.search.search_workers) == (2, 3)


def test_a_group_given_whole_keeps_its_values_over_the_environment(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("TASADOR_SEARCH_TRIALS", "9")
    clean_env.setenv("TASADOR_SEARCH_WORKERS", "3")
    settings = Settings(search=SearchSettings(search_trials=2), _env_file=None)
    assert (settings.search.search_trials, settings.search.search_workers) == (2, 3)


def test_an_invalid_value_is_refused_with_its_name(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TASADOR_GROUP_NUMBER", "11")
    with pytest.raises(ValidationError, match="group_number"):
        Settings(_env_file=None)
    with pytest.raises(ValidationError, match="day"):
        Settings(day="Monday", _env_file=None)


@pytest.mark.parametrize("coverage", ["0.83", "1", "0.45", "80"])
def test_a_range_coverage_not_calibrated_for_is_refused_saying_which_are(
    clean_env: pytest.MonkeyPatch, coverage: str
) -> None:
    clean_env.setenv("TASADOR_SERVING_RANGE_COVERAGE", coverage)
    with pytest.raises(ValidationError, match=r"calibrated for 0\.50, 0\.55, .* 0\.95"):
        Settings(_env_file=None)
    clean_env.setenv("TASADOR_SERVING_RANGE_COVERAGE", "0.95")
    assert Settings(_env_file=None).serving.serving_range_coverage == 0.95


def test_updated_changes_flat_names_validated_without_rereading(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, model_name="m")
    clean_env.setenv("TASADOR_SEARCH_WORKERS", "5")  # read at construction, not at updates
    changed = settings.updated(search_trials=2, state_dir=str(tmp_path), serving_api_key="k")
    assert changed.search.search_trials == 2 and changed.state_dir == tmp_path
    assert changed.serving.serving_api_key == SecretStr("k")
    assert changed.search.search_workers == 2 and changed.mlflow.model_name == "m"
    assert settings.search.search_trials == 40  # frozen: the original is unchanged
    with pytest.raises(ValidationError):
        settings.updated(search_trials=0)
    with pytest.raises(TypeError, match="serch_trials"):
        settings.updated(serch_trials=2)


def test_settings_are_frozen_and_hashable() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ValidationError):
        settings.search.search_trials = 3  # type: ignore[misc]
    assert hash(settings) == hash(Settings(_env_file=None))


def test_settings_env_recreates_the_settings(clean_env: pytest.MonkeyPatch) -> None:
    given = {v.removeprefix("TASADOR_").lower(): value for v, (value, _) in VARIABLES.items()}
    settings = Settings(_env_file=None, **given)
    env = settings_env(settings)
    assert set(env) == set(VARIABLES)
    for key, value in env.items():
        clean_env.setenv(key, value)
    assert Settings(_env_file=None) == settings
    defaults = Settings(_env_file=None, state_dir=Path("/srv/state"))
    for key in env:
        clean_env.delenv(key)
    for key, value in settings_env(defaults).items():
        clean_env.setenv(key, value)
    assert Settings(_env_file=None) == defaults
