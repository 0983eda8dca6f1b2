"""The environment a Tasador process sets for itself, once, at its entry point.

Called by entry points only (the `tasador` command, the DAG files, the Streamlit main script):
library functions never write ``os.environ``.
"""

from __future__ import annotations

import os


def prepare_process(service: bool = False) -> None:
    """Environment a `tasador` process needs before it talks to MLflow (entry points only).

    - MLflow 3.17 refuses to load any sklearn model (pickle or skops) unless
      ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is true. Our registry holds only models our own
      training wrote.
    - MLflow prints a "View run" URL per ended run: noise in worker and Airflow task logs.
    - ``MLFLOW_RUN_ID`` leaking in from a parent process would make fluent calls log into the
      wrong run (mlflow#15713).
    - Long-running services (serving, the UI) fail fast: serving polls the registry again every
      few seconds and the UI shows a message, so MLflow's own retries (minutes of backoff) would
      only hide an outage.
    """
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.pop("MLFLOW_RUN_ID", None)
    if service:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        os.environ.setdefault("PGCONNECT_TIMEOUT", "5")
