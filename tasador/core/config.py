"""One settings object for every URL, secret and knob, read from the environment.

Every variable is prefixed ``TASADOR_`` (see ``.env.example``). A database URL left unset means
"use the embedded PostgreSQL under ``state_dir``", so every command works right after install.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of Tasador, read from ``TASADOR_*`` environment variables and ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="TASADOR_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # Where embedded services keep their state (git-ignored).
    state_dir: Path = Path(".tasador")

    # Databases. None means: a database of the embedded PostgreSQL.
    raw_db_url: SecretStr | None = None
    clean_db_url: SecretStr | None = None
    optuna_storage_url: SecretStr | None = None
    mlflow_backend_url: SecretStr | None = None

    # MLflow. None means: the embedded MLflow server that `tasador` starts on demand.
    mlflow_tracking_uri: str | None = None
    mlflow_artifacts_destination: str | None = None
    model_name: str = "realtor-price"
    production_alias: str = "production"

    # Data API the collector reads from.
    data_api_url: str = "http://127.0.0.1:8001"
    group_number: int = Field(default=1, ge=1, le=10)
    day: str | None = None
    api_timeout_s: float = Field(default=60.0, gt=0)
    api_max_retries: int = Field(default=5, ge=0, le=20)
    api_backoff_s: float = Field(default=0.5, ge=0)
    # Largest batch body the collector reads (bytes, decoded); a bigger one is refused unread,
    # so a runaway or hostile API cannot exhaust memory. 256 MiB is ~1M course rows.
    api_max_response_bytes: int = Field(default=268_435_456, ge=1024)

    # Append one JSON line per timed step (wall, CPU, peak memory) here; None: not recorded.
    # benchmarks/loop.py sets it; tasador/core/timings.py writes it.
    timings_file: Path | None = None

    # Airflow: cron or preset ("@hourly") for the ingestion DAG; None means manual runs only.
    ingest_schedule: str | None = None

    # Data API service (datasource/).
    datasource_scenario: str = "course"
    datasource_scale: float = Field(default=0.01, gt=0)
    datasource_csv: Path | None = None
    datasource_seed: int = 42

    # Retrain decisions (tasador/decide.py explains each rule).
    drift_psi_threshold: float = Field(default=0.2, gt=0)  # PSI above this: a real shift
    drift_p_value: float = Field(default=0.01, gt=0, lt=1)  # tests must also reject at this level
    drift_ks_min_statistic: float = Field(default=0.15, gt=0, le=1)  # KS D counted as an effect
    drift_unseen_share: float = Field(default=0.05, gt=0, le=1)  # new-category rows beyond chance
    drift_model_error_ratio: float = Field(default=1.25, gt=1)  # batch RMSLE / holdout RMSLE
    drift_sample_rows: int = Field(default=50_000, ge=1_000)  # per side, for KS/PSI/chi-square
    drift_model_rows: int = Field(default=20_000, ge=100)  # batch rows scored by the model
    # Clean rows a batch needs to be judged or trained on: fewer cannot tell drift from noise,
    # so such a batch gets a stored skip, is never the baseline and is left out of training.
    decide_min_clean_rows: int = Field(default=50, ge=1)

    # Search, promotion and explanations (experiments/ explains each).
    experiment_name: str = "realtor-price"  # MLflow experiment holding every study's runs
    search_spaces_dir: Path | None = None  # None: the repository's search_spaces/
    search_trials: int = Field(default=40, ge=1)  # per study, all workers together
    search_workers: int = Field(default=2, ge=1)
    # Wall-clock budget of a study, all workers together, from its first trial (None: none).
    search_timeout_s: float | None = Field(default=300.0, gt=0)
    # A trial still fitting after this many seconds is stopped and recorded (None: no limit).
    search_trial_timeout_s: float | None = Field(default=60.0, gt=0)
    search_cv_folds: int = Field(default=3, ge=2, le=10)  # also the pruning steps
    search_sample_rows: int = Field(default=30_000, ge=200)  # training rows the trials see
    search_threads: int = Field(default=1, ge=1)  # estimator threads in each worker
    search_seed: int = 42
    search_sampler: Literal["tpe", "random"] = "tpe"  # random: the baseline to compare against
    search_heartbeat_s: int = Field(default=10, ge=1)  # Optuna heartbeat of a running trial
    search_grace_s: int = Field(default=60, ge=2)  # silence after which a trial is stale
    search_max_retries: int = Field(default=2, ge=0)  # re-runs of a trial whose worker died
    promotion_margin: float = Field(default=0.01, ge=0, lt=1)  # relative RMSLE gain to promote
    shap_sample_rows: int = Field(default=500, ge=20)  # holdout rows explained per model
    # Training rows the best trial is refitted on (a reproducible sample beyond it).
    refit_sample_rows: int = Field(default=300_000, ge=200)

    # Serving (serving/) and the UI (app/).
    serving_poll_s: float = Field(default=5.0, gt=0)  # how often serving checks the alias
    # uvicorn worker processes of `tasador serve` (one uses one core); None: the core count.
    serving_workers: int | None = Field(default=None, ge=1)
    serving_max_rows: int = Field(default=10_000, ge=1)  # listings per /predict request
    serving_log_buffer_rows: int = Field(default=50_000, ge=100)  # in memory, then spooled
    serving_log_flush_s: float = Field(default=1.0, gt=0)  # inference log write interval
    # Bytes of inference-log spool files kept while the database is down; past it the oldest
    # rows are dropped (and counted in /metrics) so a long outage cannot fill the disk.
    serving_log_spool_max_bytes: int = Field(default=1024**3, ge=4_096)
    # Seconds shutdown may spend writing (or spooling) the inference log: keep it under the
    # container's stop_grace_period (docker-compose.yml, 30s), or the rest is killed unwritten.
    serving_shutdown_s: float = Field(default=20.0, gt=0)
    # Largest /predict or /explain body, enforced while reading (413 before the body ends). A full
    # listing is ~300 bytes of JSON: 8 MiB leaves ~800 bytes per listing at serving_max_rows.
    serving_max_body_bytes: int = Field(default=8 * 1024**2, ge=1_024)
    # Explanations computed at once (SHAP is CPU-heavy); more get 429 so /predict keeps its CPU.
    serving_max_explains: int = Field(default=2, ge=1)
    # None: serving is open. Set: /predict, /explain and /model need it in X-API-Key (or
    # Authorization: Bearer); the UI sends it. /health, /ready and /metrics stay open for probes.
    serving_api_key: SecretStr | None = None
    serving_api_url: str = "http://127.0.0.1:8000"  # where the UI reaches serving
    # Links the UI shows: addresses a browser reaches (None: the tracking URI; no link).
    mlflow_public_url: str | None = None
    optuna_dashboard_url: str | None = None

    @field_validator("day")
    @classmethod
    def _day_known(cls, value: str | None) -> str | None:
        if value is not None and value not in {"Tuesday", "Wednesday"}:
            raise ValueError("day must be 'Tuesday' or 'Wednesday' (or unset)")
        return value

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def inbox_dir(self) -> Path:
        """Where the collector keeps each received body until RAW has stored it."""
        return self.state_dir / "inbox"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that recreate ``settings`` in another process."""
    env = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Path):
            value = value.resolve()
        env[f"TASADOR_{name.upper()}"] = str(value)
    return env


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once and cached."""
    return Settings()
