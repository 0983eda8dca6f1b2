"""The environment a Tasador process sets for itself, once, at its entry point.

Called by entry points only (the `tasador` command, the DAG files, the Streamlit main script):
library functions never write ``os.environ``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

PICKLE_SETTING = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


def prepare_process(service: bool = False, unpickles: bool = True) -> None:
    """Environment a `tasador` process needs before it talks to MLflow (entry points only).

    - MLflow 3.17 refuses to load any sklearn model (pickle or skops) unless
      ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is true, and loading one runs the code its pickle
      names. Training, the champion step and MLflow's tools load them (``unpickles``); serving
      (``unpickles=False``) loads scoring artifacts only, so the setting is removed there, even
      when inherited: MLflow then refuses a pickle any code path of it would load.
    - MLflow prints a "View run" URL per ended run: noise in worker and Airflow task logs.
    - ``MLFLOW_RUN_ID`` leaking in from a parent process would make fluent calls log into the
      wrong run (mlflow#15713).
    - Long-running services (serving, the UI) fail fast: serving polls the registry again every
      few seconds and the UI shows a message, so MLflow's own retries (minutes of backoff) would
      only hide an outage.
    """
    if unpickles:
        os.environ.setdefault(PICKLE_SETTING, "true")
    else:
        os.environ.pop(PICKLE_SETTING, None)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.pop("MLFLOW_RUN_ID", None)
    if service:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        os.environ.setdefault("PGCONNECT_TIMEOUT", "5")


def log_to_file(path: Path) -> None:
    """Send library output (warnings, MLflow's and Optuna's loggers) to ``path``, not the terminal.

    For commands whose terminal output is the user's: MLflow's pickle and pip warnings, its
    environment (uv) detection and Optuna's study messages stay readable in the log file. Call
    it after importing MLflow and Optuna, which install their handlers when first used
    (``experiments.study.log_to_file`` does both)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    )
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    for name in ("mlflow", "optuna", "py.warnings", "alembic", "lightgbm"):
        library = logging.getLogger(name)
        library.handlers = []  # their own stderr handlers
        library.propagate = True
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
