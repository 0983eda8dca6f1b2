"""The settings of Tasador in groups, read from flat ``TASADOR_*`` environment variables.

Every variable is prefixed ``TASADOR_`` (see ``.env.example``), and its name is the setting's
name: ``TASADOR_SEARCH_TRIALS`` is ``settings.search.search_trials``. A group is a frozen model a
function can take alone (``db.database_url(kind, settings.databases)``); a setting keeps its
flat name inside its group, so the variable, the ``.env`` line, a flat update
(``settings.updated(search_trials=2)``) and the code name one thing the same way. A database URL
left unset means "use the embedded PostgreSQL under ``state_dir``", so every command works right
after install.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# The coverages a version's price ranges are calibrated for (experiments.calibration), so serving
# can answer any of them without the version being registered again: 50%, 55%, ... 95%.
RANGE_COVERAGES: tuple[float, ...] = tuple(round(0.50 + 0.05 * i, 2) for i in range(10))


class _Group(BaseModel):
    """A group of settings: frozen, and a misspelt name is an error rather than ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseSettings(_Group):
    """The PostgreSQL databases. None means: a database of the embedded PostgreSQL."""

    raw_db_url: SecretStr | None = None
    clean_db_url: SecretStr | None = None
    optuna_storage_url: SecretStr | None = None
    mlflow_backend_url: SecretStr | None = None


class MlflowSettings(_Group):
    """The MLflow server, the registered model and the experiment the studies log to."""

    # None means: the embedded MLflow server that `tasador` starts on demand.
    mlflow_tracking_uri: str | None = None
    mlflow_artifacts_destination: str | None = None
    model_name: str = "realtor-price"
    production_alias: str = "production"
    experiment_name: str = "realtor-price"  # MLflow experiment holding every study's runs


class DataApiSettings(_Group):
    """The data API the collector reads from, and how often the ingestion DAG runs."""

    data_api_url: str = "http://127.0.0.1:8001"
    group_number: int = Field(default=1, ge=1, le=10)
    day: str | None = None
    api_timeout_s: float = Field(default=60.0, gt=0)
    api_max_retries: int = Field(default=5, ge=0, le=20)
    api_backoff_s: float = Field(default=0.5, ge=0)
    # Largest batch body the collector reads (bytes, decoded); a bigger one is refused unread,
    # so a runaway or hostile API cannot exhaust memory. 256 MiB is ~1M course rows.
    api_max_response_bytes: int = Field(default=268_435_456, ge=1024)
    # Airflow: cron or preset ("@hourly") for the ingestion DAG; None means manual runs only.
    ingest_schedule: str | None = None

    @field_validator("day")
    @classmethod
    def _day_known(cls, value: str | None) -> str | None:
        if value is not None and value not in {"Tuesday", "Wednesday"}:
            raise ValueError("day must be 'Tuesday' or 'Wednesday' (or unset)")
        return value


class DatasourceSettings(_Group):
    """The built-in data API service (datasource/)."""

    datasource_scenario: str = "course"
    datasource_scale: float = Field(default=0.01, gt=0)
    datasource_csv: Path | None = None
    datasource_seed: int = 42


class DriftSettings(_Group):
    """Retrain decisions: tasador/core/evidence.py applies each threshold, and the docstring of
    tasador/loop/decide.py explains each rule."""

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
    # Served requests (listings) a live drift check needs to compare (tasador.loop.monitor):
    # fewer say so and raise no alarm, and wait for more.
    live_min_rows: int = Field(default=200, ge=1)
    # Airflow: cron or preset for the live drift DAG (dags/tasador_monitoring.py); None: manual.
    live_schedule: str | None = "@hourly"


class SearchSettings(_Group):
    """The hyperparameter search, and the refit and explanations of its best trial
    (experiments/ explains each)."""

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
    shap_sample_rows: int = Field(default=500, ge=20)  # holdout rows explained per model
    # Training rows the best trial is refitted on (a reproducible sample beyond it).
    refit_sample_rows: int = Field(default=300_000, ge=200)
    # Folds of the out-of-fold residuals a version's price ranges are calibrated on: each fold's
    # model learns (k-1)/k of the refit rows, so more folds come closer to the refitted model's
    # errors (ranges neither too wide nor too narrow) at k fits' cost.
    range_folds: int = Field(default=5, ge=2, le=20)
    # `tasador reproduce`: how far a rebuilt version's holdout RMSLE may be from the recorded one,
    # and its holdout prices from the registered model's (median), relative: refits on other
    # hardware or thread counts differ in the last digits of a booster's splits.
    reproduce_tolerance: float = Field(default=0.01, gt=0, lt=1)


class PromotionSettings(_Group):
    """When a challenger replaces the production model (experiments/ explains each)."""

    promotion_margin: float = Field(default=0.01, ge=0, lt=1)  # relative RMSLE gain to promote
    # The challenger must beat the margin with this confidence: the central interval of a paired
    # bootstrap of the holdout RMSLE improvement (experiments.gate) must lie wholly above it.
    promotion_confidence: float = Field(default=0.95, gt=0, lt=1)
    # Bootstrap resamples of the holdout rows; 2,000 keeps the interval's ends steady to about
    # 0.1 point and takes well under a second on 100k holdout rows.
    promotion_bootstrap_draws: int = Field(default=2_000, ge=100)
    # A challenger whose RMSLE on one state, on land or on houses is worse than production's by
    # more than this share (relative: 0.10 means 10% worse) is refused, however good on average.
    promotion_segment_limit: float = Field(default=0.10, gt=0)
    # Holdout rows a state or kind needs for that guard: on fewer, its RMSLE is mostly noise.
    promotion_min_segment_rows: int = Field(default=50, ge=1)
    # Shadow rows (serving.shadow) a challenger needs scored next to production before it may be
    # promoted; 0: no such requirement. A challenger that wins on the holdout but has fewer
    # waits (the alias stays) until `tasador promote --challenger` finds enough.
    promotion_min_shadow_rows: int = Field(default=0, ge=0)


class ServingSettings(_Group):
    """The prediction service (serving/)."""

    serving_poll_s: float = Field(default=5.0, gt=0)  # how often serving checks the alias
    # How long a starting worker waits for its first model load to finish or fail before it
    # takes requests (then it answers 503 saying why until a model loads): a worker that takes
    # requests while loading answers them 503 although another worker said /ready.
    serving_first_load_s: float = Field(default=120.0, gt=0)
    # How far (relative, either way) a new version's RMSLE on its stored validation sample may
    # be from its registered holdout RMSLE before serving refuses it (serving/validation.py).
    serving_validation_tolerance: float = Field(default=0.35, gt=0)
    # uvicorn worker processes of `tasador serve` (one uses one core); None: the core count.
    serving_workers: int | None = Field(default=None, ge=1)
    serving_max_rows: int = Field(default=10_000, ge=1)  # listings per /predict request
    serving_log_buffer_rows: int = Field(default=50_000, ge=100)  # in memory, then spooled
    # Inference log write interval. Short on purpose: the writer thread's pass (making COPY text
    # of every row since the last) holds a core and the interpreter for ~45 ms a second at 2,000
    # requests/s per worker; four passes a second keep each burst, and the requests queued behind
    # it, small (wrk's p99 at 4 connections 35 -> 10 ms; docs/benchmarks.md, serving).
    serving_log_flush_s: float = Field(default=0.25, gt=0)
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
    # Share of /predict requests whose rows the @challenger version also scores, off the request
    # path, logged next to production's prices (serving.shadow); 0: off. 0.1 keeps the extra
    # CPU to a tenth of scoring on a machine where serving shares its cores, and still gives a
    # challenger thousands of rows a day at modest traffic (benchmarks/shadow.py measures it).
    serving_shadow_share: float = Field(default=0.1, ge=0, le=1)
    # None: serving is open. Set: /predict, /explain and /model need it in X-API-Key (or
    # Authorization: Bearer); the UI sends it. /health, /ready and /metrics stay open for probes.
    serving_api_key: SecretStr | None = None
    # The share of listings the price range given with each price should contain: one of
    # RANGE_COVERAGES (each version stores its ranges for all of them).
    serving_range_coverage: float = 0.80

    @field_validator("serving_range_coverage")
    @classmethod
    def _calibrated_coverage(cls, value: float) -> float:
        for coverage in RANGE_COVERAGES:
            if abs(value - coverage) < 1e-9:
                return coverage
        offered = ", ".join(f"{c:.2f}" for c in RANGE_COVERAGES)
        raise ValueError(
            f"TASADOR_SERVING_RANGE_COVERAGE={value}: price ranges are calibrated for {offered}"
        )


class UiSettings(_Group):
    """The UI (app/): where it reaches serving, and the links it shows."""

    serving_api_url: str = "http://127.0.0.1:8000"  # where the UI reaches serving
    # Addresses a browser reaches (None: the tracking URI; no link).
    mlflow_public_url: str | None = None
    optuna_dashboard_url: str | None = None


# Each group's attribute on Settings, in the order .env.example lists them.
GROUPS: dict[str, type[_Group]] = {
    "databases": DatabaseSettings,
    "mlflow": MlflowSettings,
    "data_api": DataApiSettings,
    "datasource": DatasourceSettings,
    "drift": DriftSettings,
    "search": SearchSettings,
    "promotion": PromotionSettings,
    "serving": ServingSettings,
    "ui": UiSettings,
}
# The group of each grouped setting, by its flat name (the variable without TASADOR_, lower).
GROUP_OF: dict[str, str] = {
    name: group for group, model in GROUPS.items() for name in model.model_fields
}


# How settings are read: TASADOR_<NAME> variables, then a .env file.
_ENVIRONMENT = SettingsConfigDict(
    env_prefix="TASADOR_",
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    frozen=True,
)


class _FlatBase(BaseSettings):
    """Reads like Settings; _FlatNames below gives it one field per variable."""

    model_config = _ENVIRONMENT


class Settings(BaseSettings):
    """Every setting of Tasador, read from ``TASADOR_*`` environment variables and ``.env``.

    Built with flat names, as the environment spells them (``Settings(raw_db_url=...)``), or
    with whole groups (``Settings(databases=DatabaseSettings(...))``).
    """

    model_config = _ENVIRONMENT

    # Where embedded services keep their state (git-ignored).
    state_dir: Path = Path(".tasador")
    # Append one JSON line per timed step (wall, CPU, peak memory) here; None: not recorded.
    # benchmarks/loop.py sets it; tasador/core/timings.py writes it.
    timings_file: Path | None = None

    databases: DatabaseSettings = Field(default_factory=DatabaseSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    data_api: DataApiSettings = Field(default_factory=DataApiSettings)
    datasource: DatasourceSettings = Field(default_factory=DatasourceSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    ui: UiSettings = Field(default_factory=UiSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The stock sources look up one variable per field of Settings (TASADOR_SEARCH for the
        # group); these look up one per flat name, with the same prefix, case rule and .env file
        # (including Settings(_env_file=None)). _route_flat_names puts what they find in groups.
        assert isinstance(env_settings, EnvSettingsSource)
        assert isinstance(dotenv_settings, DotEnvSettingsSource)
        flat_env = EnvSettingsSource(
            _FlatNames,
            case_sensitive=env_settings.case_sensitive,
            env_prefix=env_settings.env_prefix,
        )
        flat_dotenv = DotEnvSettingsSource(
            _FlatNames,
            env_file=dotenv_settings.env_file,
            env_file_encoding=dotenv_settings.env_file_encoding,
            case_sensitive=dotenv_settings.case_sensitive,
            env_prefix=dotenv_settings.env_prefix,
        )
        return init_settings, flat_env, flat_dotenv, file_secret_settings

    @model_validator(mode="before")
    @classmethod
    def _route_flat_names(cls, data: Any) -> Any:
        """Move each flat name (from the environment, .env or a keyword) into its group.

        A group given whole keeps the values it was given, over flat names; its defaults give
        way to them (``Settings(search=SearchSettings(search_trials=2))`` still reads
        TASADOR_SEARCH_WORKERS)."""
        if not isinstance(data, dict):
            return data
        routed = {key: value for key, value in data.items() if key not in GROUP_OF}
        flat: dict[str, dict[str, Any]] = {}
        for key, value in data.items():
            if (group := GROUP_OF.get(key)) is not None:
                flat.setdefault(group, {})[key] = value
        for group, values in flat.items():
            given = routed.get(group)
            if isinstance(given, BaseModel):
                given = {name: getattr(given, name) for name in given.model_fields_set}
            routed[group] = {**values, **(given if isinstance(given, dict) else {})}
        return routed

    @classmethod
    def flat_fields(cls) -> dict[str, FieldInfo]:
        """Every setting's field (its default, its type), by its flat name."""
        fields = {name: cls.model_fields[name] for name in _TOP_LEVEL}
        for model in GROUPS.values():
            fields.update(model.model_fields)
        return fields

    def flat(self) -> dict[str, Any]:
        """Every setting's value, by its flat name."""
        values = {name: getattr(self, name) for name in _TOP_LEVEL}
        for group in GROUPS:
            values.update(dict(getattr(self, group)))
        return values

    def updated(self, **changes: Any) -> Settings:
        """These settings with some changed, given by flat name and validated (the environment
        is not read again): ``settings.updated(search_trials=2)``."""
        unknown = sorted(set(changes) - set(self.flat_fields()))
        if unknown:
            raise TypeError(f"not settings: {', '.join(unknown)}")
        return type(self).model_validate({**self.flat(), **changes})

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def inbox_dir(self) -> Path:
        """Where the collector keeps each received body until RAW has stored it."""
        return self.state_dir / "inbox"


# The settings that belong to no group.
_TOP_LEVEL: tuple[str, ...] = tuple(name for name in Settings.model_fields if name not in GROUPS)

# The shape the flat sources read: one field per variable (its type tells the source how to
# parse it); nothing is validated here, Settings validates what they find.
_FLAT_SHAPE: dict[str, Any] = {
    name: (info.annotation, None) for name, info in Settings.flat_fields().items()
}
_FlatNames = create_model("_FlatNames", __base__=_FlatBase, **_FLAT_SHAPE)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that recreate ``settings`` in another process."""
    env = {}
    for name, value in settings.flat().items():
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
