"""The compose stack's services as local processes: their environment, start and healthcheck.

What docker-compose.yml (with .env.example) gives a service, localized as
tests/helpers/local_run.py explains; used by the start-command tests and the distributed-path
test (tests/deploy), whose fixtures (``localizer``, ``redis_server``) are in tests/deploy.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tasador.core.services import free_port
from tests.helpers import compose
from tests.helpers.dockerfile import (
    context_files,
    dependency_groups,
    env_vars,
    exposed_port,
    final_stage,
    healthcheck_command,
    left_out_packages,
    start_command,
)
from tests.helpers.local_run import (
    Localizer,
    base_env,
    localize_args,
    modules_of,
    packages_not_in_images,
    replace_port,
    started,
    wait_healthy,
    write_import_blocker,
)

ENV = compose.env_file()
MODEL, _ = compose.resolved(ENV)
SERVICES = MODEL["services"]
# The compose service that runs each image with the image's own command.
SERVICE_OF = {
    "airflow": "airflow-api-server",
    "app": "app",
    "datasource": "datasource",
    "mlflow": "mlflow",
    "optuna-dashboard": "optuna-dashboard",
    "serving": "serving",
}
# What the official base image sets and the Dockerfile relies on.
BASE_IMAGE_ENV = {"apache/airflow": {"AIRFLOW_HOME": "/opt/airflow"}}
STARTUP_S = {"airflow": 150.0, "mlflow": 180.0}
# Debian's Redis server stands in for Valkey (bookworm has no valkey-server); `make test`
# installs it, `make test REDIS_SERVER=...` names another one.
REDIS_SERVER = Path(os.environ.get("REDIS_SERVER", "/usr/bin/redis-server"))
# Ports an Airflow component listens on besides the API: made free ones here.
AIRFLOW_PORTS = {
    "airflow-scheduler": ("AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT", 8974),
    "airflow-triggerer": ("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", 8794),
    "airflow-worker": ("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", 8793),
}


def environment(image: str, service: str, localizer: Localizer, tmp_path: Path) -> dict[str, str]:
    """The environment compose gives ``service`` (running ``image``), localized."""
    final = final_stage(image)
    # An image without a group (optuna-dashboard installs named packages) is checked on them all.
    groups = dependency_groups(image) or None
    absent = modules_of(packages_not_in_images(left_out_packages(), groups))
    env = base_env(tmp_path / "home", write_import_blocker(tmp_path / "not-in-image", absent))
    localizer.mirror(context_files(final))
    for prefix, values in BASE_IMAGE_ENV.items():
        if final.base.startswith(prefix + ":"):
            env |= {k: localizer.value(v) for k, v in values.items()}
    env |= {k: localizer.value(v) for k, v in env_vars(final).items() if k != "PATH"}
    env |= {k: localizer.value(v) for k, v in compose.service_env(SERVICES[service], ENV).items()}
    return env


@contextmanager
def serving(
    image: str,
    localizer: Localizer,
    tmp_path: Path,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """The image's start command, healthy; yields its local base URL."""
    final = final_stage(image)
    service = SERVICE_OF[image]
    command = start_command(final)
    assert SERVICES[service].get("command", command) == command, (
        f"docker-compose.yml runs {service} with another command than the image's"
    )
    port, local_port = exposed_port(final), free_port()
    args = localize_args(replace_port(command, port, local_port), final, localizer)
    probe = localize_args(
        replace_port(healthcheck_command(final), port, local_port), final, localizer
    )
    env = environment(image, service, localizer, tmp_path) | dict(extra_env or {})
    log = tmp_path / f"{image}.log"
    with started(args, env, cwd=tmp_path, log=log) as process:
        wait_healthy(process, probe, env, log, timeout_s=STARTUP_S.get(image, 90.0))
        yield f"http://127.0.0.1:{local_port}"


def compose_probe(service: Mapping) -> list[str]:
    """The compose healthcheck of ``service`` as a command line."""
    kind, *rest = service["healthcheck"]["test"]
    return rest if kind == "CMD" else ["sh", "-c", rest[0]]


def airflow_component(
    name: str,
    localizer: Localizer,
    tmp_path: Path,
    extra_env: Mapping[str, str] | None = None,
) -> tuple[list[str], list[str], dict[str, str]]:
    """(command, healthcheck, environment) of the Airflow compose service ``name``, localized:
    its side ports made free ones, ``$HOSTNAME`` the machine's (the healthchecks ask for it)."""
    final = final_stage("airflow")
    env = environment("airflow", name, localizer, tmp_path) | {"HOSTNAME": socket.gethostname()}
    env |= dict(extra_env or {})
    probe = compose_probe(SERVICES[name])
    if name in AIRFLOW_PORTS:
        variable, port = AIRFLOW_PORTS[name]
        env[variable] = str(local := free_port())
        probe = replace_port(probe, port, local)
    args = localize_args(SERVICES[name]["command"], final, localizer)
    return args, localize_args(probe, final, localizer), env
