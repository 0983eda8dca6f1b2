#!/usr/bin/env python3
"""One-shot set-up of MLflow's identities for the compose stack (service ``mlflow-init``).

A model in the registry is a pickle that serving and the Airflow workers load: whoever can
register a version or move ``@production`` runs code in them. So the MLflow server runs its
basic-auth app (docker/mlflow/start.py) with ``default_permission = READ``, and this job, logged
in as MLflow's admin (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``):

1. creates (or, when they exist, sets the password from ``.env`` of) one user per client:
   ``training`` for the Airflow workers, ``serving`` and ``ui`` for the readers, none an admin;
2. creates the experiment ``TASADOR_EXPERIMENT_NAME`` and the registered model
   ``TASADOR_MODEL_NAME`` when missing, so no reader can create them first and own them;
3. grants the training user MANAGE on both, and the readers READ (resetting any wider grant).

Safe to repeat; every client service waits for it to exit 0.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

# The defaults of tasador/core/config.py (this image does not ship the project).
DEFAULT_EXPERIMENT = "realtor-price"
DEFAULT_MODEL = "realtor-price"
WRITER = "TRAINING"
READERS = ("SERVING", "UI")
REQUIRED = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    *(f"MLFLOW_{role}_{part}" for role in (WRITER, *READERS) for part in ("USER", "PASSWORD")),
)


def configuration_errors(env: Mapping[str, str]) -> list[str]:
    errors = [f"{name} is not set" for name in REQUIRED if not env.get(name)]
    users = [env.get(f"MLFLOW_{role}_USER") for role in (WRITER, *READERS)]
    if not errors and len(set(users)) < len(users):
        errors.append("the training, serving and ui users must have different names")
    if not errors and env["MLFLOW_TRACKING_USERNAME"] in users:
        errors.append("the admin must not be one of the client users")
    return errors


def ensure_user(auth, username: str, password: str) -> str:
    """Create the user, or give an existing one the password of ``.env``; never an admin."""
    from mlflow.exceptions import RestException

    try:
        auth.create_user(username, password)
        created = "created"
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.update_user_password(username, password)
        created = "password set"
    auth.update_user_admin(username, False)
    return created


def ensure_resources(client, experiment: str, model: str) -> str:
    """The experiment's id; the experiment and the registered model exist afterwards."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    try:
        client.get_registered_model(model)
    except MlflowException:
        client.create_registered_model(model)
    return experiment_id


def grant(auth, username: str, resource_type: str, resource_id: str, permission: str) -> None:
    """Give ``username`` exactly ``permission`` on the resource (replacing an earlier grant)."""
    from mlflow.exceptions import RestException

    try:
        auth.grant_user_permission(username, resource_type, resource_id, permission)
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.revoke_user_permission(username, resource_type, resource_id)
        auth.grant_user_permission(username, resource_type, resource_id, permission)


def main(env: Mapping[str, str]) -> int:
    if errors := configuration_errors(env):
        print("\n".join(f"mlflow-init: {error}" for error in errors), file=sys.stderr)
        return 2
    from mlflow import MlflowClient
    from mlflow.server import get_app_client

    uri = env["MLFLOW_TRACKING_URI"]
    auth = get_app_client("basic-auth", tracking_uri=uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = env.get("TASADOR_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    model = env.get("TASADOR_MODEL_NAME") or DEFAULT_MODEL
    experiment_id = ensure_resources(client, experiment, model)
    for role in (WRITER, *READERS):
        user = env[f"MLFLOW_{role}_USER"]
        outcome = ensure_user(auth, user, env[f"MLFLOW_{role}_PASSWORD"])
        permission = "MANAGE" if role == WRITER else "READ"
        grant(auth, user, "experiment", experiment_id, permission)
        grant(auth, user, "registered_model", model, permission)
        print(
            f"mlflow-init: user {user!r} {outcome}; {permission} on experiment {experiment!r} "
            f"and registered model {model!r}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
