"""The serving process: ``python -m serving.server --host H --port P``, what `tasador serve`
becomes (it resolves the settings, exports them to the environment, then execs this).

A process of its own, so the serving workers import serving and what it needs only: not the CLI,
the loop, the search, training or Airflow (tests/serving/test_server.py checks ``sys.modules``).

Runs ``serving_workers`` uvicorn worker processes (default: one per core; one process uses one
core), each building the app from the environment's settings. They share one alias decision
(serving.hot_swap), one inference-log spool (serving.inference_log) and one folder of metric
values, so ``/metrics`` counts every worker's requests (serving.metrics). A worker takes requests
once its first model load has finished or failed (serving.service.Service.first_load); uvicorn
replaces a worker that dies, and the new one loads the same way before it takes any.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

import uvicorn

from tasador.core.config import get_settings
from tasador.core.process import prepare_process

# prometheus_client reads it when imported: set here, where it is not imported (serving.metrics).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Requests in flight get this long at shutdown; then the inference log's own flush bound.
GRACEFUL_SHUTDOWN_S = 5


def workers(configured: int | None) -> int:
    """Worker processes: the setting, else one per core."""
    return configured or os.cpu_count() or 1


def share_metrics(state_dir: Path) -> Path:
    """An empty folder for every worker's metric values, named in the environment the workers
    inherit; before prometheus_client is imported, which reads it once (serving.metrics)."""
    folder = state_dir / "serving" / "metrics"
    shutil.rmtree(folder, ignore_errors=True)  # a previous run's counts are not this one's
    folder.mkdir(parents=True)
    os.environ[MULTIPROCESS_ENV] = str(folder)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the production model over HTTP.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    prepare_process(service=True, unpickles=False)  # serving never loads a pickle
    settings = get_settings()
    share_metrics(settings.state_dir)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        "serving.api:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers(settings.serving.serving_workers),
        access_log=False,  # every request is in the inference log and the metrics already
        log_level="info",
        # Bounded, so draining requests plus the inference log's flush (serving_shutdown_s)
        # fit in the container's stop_grace_period.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


if __name__ == "__main__":
    main()
