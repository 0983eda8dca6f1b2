"""The keys of the two Helm charts' values that docker/helm/ uses, as their sources document them.

Neither chart's repository is reachable from the build machine, so the few keys the project
sets are listed here with where each is documented; a values file using a key outside the list
is an error (a typo, or a key the chart does not have). Below an *opaque* key the chart takes a
Kubernetes object or free text as it is (resources, env entries, volumes, SQL), which the
Kubernetes schema check (kubeconform, in the image workflow) covers instead.

Paths are dotted; ``[]`` stands for every item of a list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.helpers.dockerfile import DOCKER_DIR

HELM_DIR = DOCKER_DIR / "helm"

# apache/airflow, chart/values.yaml (top level, data, dags, workers, config) and the chart's
# docs: chart/docs/customizing-workers.rst (workers.celery.enableDefault, .queue, .sets[].name,
# .sets[].queue), chart/docs/keda.rst (workers.celery.keda.*), and
# helm-tests/.../test_worker_sets.py, which renders every per-set override used here
# (replicas, resources, persistence, keda.enabled/minReplicaCount/maxReplicaCount/
# pollingInterval/cooldownPeriod/query).
AIRFLOW_KEYS = frozenset(
    {
        "defaultAirflowRepository",
        "defaultAirflowTag",
        "airflowVersion",
        "executor",
        "dags",
        "dags.persistence",
        "dags.persistence.enabled",
        "dags.gitSync",
        "dags.gitSync.enabled",
        "postgresql",
        "postgresql.enabled",
        "data",
        "data.metadataSecretName",
        "data.brokerUrlSecretName",
        "redis",
        "redis.enabled",
        "fernetKeySecretName",
        "apiSecretKeySecretName",
        "jwtSecretName",
        "extraEnvFrom",
        "env",
        "config",
        "config.celery",
        "config.celery.worker_concurrency",
        "workers",
        "workers.terminationGracePeriodSeconds",
        "workers.celery",
        "workers.celery.enableDefault",
        "workers.celery.queue",
        "workers.celery.replicas",
        "workers.celery.persistence",
        "workers.celery.persistence.enabled",
        "workers.celery.sets",
        "workers.celery.sets[]",
        "workers.celery.sets[].name",
        "workers.celery.sets[].queue",
        "workers.celery.sets[].replicas",
        "workers.celery.sets[].keda",
        "workers.celery.sets[].keda.enabled",
        "workers.celery.sets[].keda.minReplicaCount",
        "workers.celery.sets[].keda.maxReplicaCount",
        "workers.celery.sets[].keda.pollingInterval",
        "workers.celery.sets[].keda.cooldownPeriod",
        "scheduler",
        "scheduler.replicas",
        "dagProcessor",
        "dagProcessor.enabled",
        "triggerer",
        "triggerer.enabled",
        "apiServer",
        "apiServer.replicas",
        "createUserJob",
        "createUserJob.useHelmHooks",
        "migrateDatabaseJob",
        "migrateDatabaseJob.useHelmHooks",
    }
)
AIRFLOW_OPAQUE = frozenset(
    {
        "env[]",
        "workers.celery.resources",
        "workers.celery.sets[].resources",
        "workers.celery.sets[].keda.query",
    }
)

# mlflow/mlflow, charts/values.yaml and charts/README.md (the chart MLflow publishes as
# oci://ghcr.io/mlflow/charts/mlflow). ``server.value_options`` is rendered as ``--key=value``
# options of ``mlflow server``, so its keys are that command's options (host, port, workers,
# app-name, allowed-hosts), checked by the test against the flags MLflow's CLI has.
MLFLOW_KEYS = frozenset(
    {
        "image",
        "image.repository",
        "image.tag",
        "fullnameOverride",
        "replicaCount",
        "server",
        "server.value_options",
        "server.flag_options",
        "server.flag_options[]",
        "mlflow",
        "mlflow.backendStoreUriFrom",
        "mlflow.artifactsDestination",
        "env",
        "extraVolumes",
        "extraVolumeMounts",
        "podSecurityContext",
    }
)
MLFLOW_OPAQUE = frozenset(
    {
        "server.value_options",
        "mlflow.backendStoreUriFrom.secretKeyRef",
        "env[]",
        "extraVolumes[]",
        "extraVolumeMounts[]",
        "podSecurityContext",
        "resources",
    }
)


def _paths(value: Any, prefix: str, opaque: frozenset[str]) -> Iterator[str]:
    """Every key path of ``value``, not descending below an opaque path."""
    if prefix in opaque:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from _paths(item, path, opaque)
    elif isinstance(value, list):
        for item in value:
            yield from _paths(item, f"{prefix}[]", opaque)


def undocumented(values: dict[str, Any], keys: frozenset[str], opaque: frozenset[str]) -> set[str]:
    """The key paths of ``values`` that are neither documented keys nor opaque ones."""
    return {p for p in _paths(values, "", opaque) if p not in keys and p not in opaque}
