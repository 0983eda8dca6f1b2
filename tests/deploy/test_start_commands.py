"""Every image's start command runs here as a plain process and answers its own healthcheck.

The command line is the Dockerfile's CMD and the probe is its HEALTHCHECK, both parsed from the
Dockerfile; the environment is the one docker-compose.yml gives the service (with .env.example),
localized as tests/helpers/local_run.py explains. Each image then does one thing it exists for.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import boto3
import httpx
import optuna
import psycopg
import pytest

from tests.helpers.dockerfile import REPO, final_stage, image_names
from tests.helpers.local_run import Localizer, localize_args, started, wait_healthy
from tests.helpers.local_stack import (
    ENV,
    SERVICE_OF,
    SERVICES,
    airflow_component,
    environment,
    serving,
)

T = TypeVar("T")


@pytest.mark.parametrize(
    ("image", "page"),
    [
        pytest.param("serving", "/docs"),  # the FastAPI docs
        pytest.param("app", "/"),
    ],
)
def test_api_and_ui_start_and_answer_their_healthcheck(
    image: str, page: str, localizer: Localizer, tmp_path: Path
) -> None:
    with serving(image, localizer, tmp_path) as url:
        assert httpx.get(f"{url}{page}", timeout=60).status_code == 200


def test_datasource_serves_a_batch(localizer: Localizer, tmp_path: Path) -> None:
    with serving("datasource", localizer, tmp_path) as url:
        assert httpx.get(f"{url}/health", timeout=60).json() == {"status": "OK"}
        batch = httpx.get(f"{url}/data", params={"group_number": 1}, timeout=60).json()
        assert batch["group_number"] == 1 and batch["data"]


def test_mlflow_keeps_runs_in_postgres_and_artifacts_in_s3(
    localizer: Localizer, s3_server: str, tmp_path: Path
) -> None:
    bucket = ENV["MLFLOW_BUCKET"]
    s3 = boto3.client("s3", endpoint_url=s3_server)
    if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket)  # what the seaweedfs-init service does
    admin = (ENV["MLFLOW_ADMIN_USER"], ENV["MLFLOW_ADMIN_PASSWORD"])
    with serving("mlflow", localizer, tmp_path) as url:
        stored = httpx.put(
            f"{url}/api/2.0/mlflow-artifacts/artifacts/deploy-test/hello.txt",
            content=b"hello",
            auth=admin,
            timeout=60,
        )
        assert stored.status_code == 200, stored.text
        search = f"{url}/api/2.0/mlflow/experiments/search?max_results=5"
        # Other containers reach it as mlflow:5000; other Host headers are refused.
        for host, status in (("mlflow:5000", 200), ("evil.example", 403)):
            answer = httpx.get(search, headers={"Host": host}, auth=admin, timeout=60)
            assert answer.status_code == status
        assert httpx.get(search, timeout=60).status_code == 401  # basic auth: no login, no data
    body = s3.get_object(Bucket=bucket, Key="deploy-test/hello.txt")["Body"].read()
    assert body == b"hello"
    with psycopg.connect(localizer.postgres("postgres-mlflow", "mlflow")) as conn:
        assert conn.execute("SELECT count(*) FROM experiments").fetchone()[0] >= 1


def test_seaweedfs_init_creates_the_bucket_once(
    localizer: Localizer, s3_server: str, tmp_path: Path
) -> None:
    """The bucket job of the stack, on a real S3 endpoint (moto), run twice like `compose up`."""
    final = final_stage("mlflow")
    bucket = f"init-{uuid.uuid4().hex[:8]}"
    env = environment("mlflow", "seaweedfs-init", localizer, tmp_path) | {"MLFLOW_BUCKET": bucket}
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            localize_args(SERVICES["seaweedfs-init"]["command"], final, localizer),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout.strip())
    assert outputs == [
        f"s3-init: bucket {bucket} created",
        f"s3-init: bucket {bucket} already there",
    ]
    s3 = boto3.client("s3", endpoint_url=s3_server)
    assert bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_seaweedfs_init_fails_clearly_when_the_store_never_answers(
    localizer: Localizer, tmp_path: Path
) -> None:
    final = final_stage("mlflow")
    env = environment("mlflow", "seaweedfs-init", localizer, tmp_path) | {
        "S3_ENDPOINT_URL": f"http://{localizer.unreachable}",
        "S3_WAIT_S": "3",
    }
    done = subprocess.run(
        localize_args(SERVICES["seaweedfs-init"]["command"], final, localizer),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Could not connect to the endpoint URL" in done.stderr


def _identity(service: str) -> tuple[str, str]:
    env = SERVICES[service]["environment"]
    return env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]


def test_mlflow_refuses_writes_from_readers_and_strangers(
    localizer: Localizer, tmp_path: Path
) -> None:
    """mlflow-init's users and grants on the basic-auth server: only training writes."""
    final = final_stage("mlflow")
    with serving("mlflow", localizer, tmp_path) as url:
        localizer.http["mlflow:5000"] = url.split("://", 1)[1]
        env = environment("mlflow", "mlflow-init", localizer, tmp_path)
        for _ in range(2):  # every `docker compose up` runs it again
            done = subprocess.run(
                localize_args(SERVICES["mlflow-init"]["command"], final, localizer),
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        api = f"{url}/api/2.0/mlflow"
        training, readers = _identity("airflow-worker"), [_identity("serving"), _identity("app")]
        name = "realtor-price"  # TASADOR_MODEL_NAME's default: mlflow-init registered it

        def call(auth: tuple[str, str] | None, method: str, path: str, **body: object) -> int:
            kwargs = {"params": body} if method == "GET" else {"json": body}
            answer = httpx.request(method, f"{api}/{path}", auth=auth, timeout=60, **kwargs)
            return answer.status_code

        # Everyone with a login reads; nobody without one; a wrong password is no login.
        assert call(None, "GET", "registered-models/get", name=name) == 401
        wrong = (training[0], "not-the-password")
        assert call(wrong, "GET", "registered-models/get", name=name) == 401
        for who in (training, *readers):
            assert call(who, "GET", "registered-models/get", name=name) == 200, who[0]
        experiment = httpx.get(
            f"{api}/experiments/get-by-name",
            params={"experiment_name": "realtor-price"},
            auth=training,
            timeout=60,
        ).json()["experiment"]["experiment_id"]

        # Training logs a run, registers a version and moves @production.
        run = httpx.post(
            f"{api}/runs/create", json={"experiment_id": experiment}, auth=training, timeout=60
        )
        assert run.status_code == 200, run.text
        info = run.json()["run"]["info"]
        source = {"source": f"{info['artifact_uri']}/model", "run_id": info["run_id"]}
        version = httpx.post(
            f"{api}/model-versions/create",
            json={"name": name, "source": source["source"], "run_id": info["run_id"]},
            auth=training,
            timeout=60,
        )
        assert version.status_code == 200, version.text
        number = version.json()["model_version"]["version"]
        alias = {"name": name, "alias": "production", "version": number}
        assert call(training, "POST", "registered-models/alias", **alias) == 200

        # The readers (and strangers) can do none of it.
        for who in (None, *readers):
            expected = 401 if who is None else 403
            label = who[0] if who else "anonymous"
            assert call(who, "POST", "runs/create", experiment_id=experiment) == expected, label
            assert call(who, "POST", "model-versions/create", name=name, **source) == expected
            assert call(who, "POST", "registered-models/alias", **alias) == expected, label
            unset = {"name": name, "alias": "production"}
            assert call(who, "DELETE", "registered-models/alias", **unset) == expected, label
            assert call(who, "DELETE", "registered-models/delete", name=name) == expected, label


def test_optuna_dashboard_reads_the_optuna_storage(localizer: Localizer, tmp_path: Path) -> None:
    # Started on an empty database, as in a fresh stack: no study exists yet.
    with serving("optuna-dashboard", localizer, tmp_path) as url:
        storage = localizer.postgres("postgres-optuna", "optuna")
        optuna.create_study(study_name="deploy-test", storage=storage)
        studies = httpx.get(f"{url}/api/studies", timeout=60).json()["study_summaries"]
        assert [s["study_name"] for s in studies] == ["deploy-test"]
        # The storage URL (a password in the stack) is on no process's command line.
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes()
            except OSError:
                continue  # the process ended
            assert storage.encode() not in args, f"{cmdline}: {args[:300]!r}"


def test_airflow_components_start_and_pass_their_healthchecks(
    localizer: Localizer, redis_server: str, tmp_path: Path
) -> None:
    """airflow-init, then the image's command (api-server, with the .env admin login), then every
    other component with its compose command, each passing its compose healthcheck."""
    final = final_stage("airflow")
    localizer.http["valkey:6379"] = redis_server
    init_env = environment("airflow", "airflow-init", localizer, tmp_path)
    done = subprocess.run(
        localize_args(SERVICES["airflow-init"]["command"], final, localizer),
        env=init_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with serving("airflow", localizer, tmp_path) as url, ExitStack() as stack:
        login = httpx.post(
            f"{url}/auth/token",
            json={"username": ENV["AIRFLOW_ADMIN_USER"], "password": ENV["AIRFLOW_ADMIN_PASSWORD"]},
            timeout=60,
        )
        assert login.status_code in (200, 201), login.text
        token = login.json()["access_token"]
        dags = httpx.get(
            f"{url}/api/v2/dags", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        assert dags.status_code == 200, dags.text
        wrong = {"username": ENV["AIRFLOW_ADMIN_USER"], "password": "not-the-password"}
        assert httpx.post(f"{url}/auth/token", json=wrong, timeout=60).status_code == 401

        localizer.http["airflow-api-server:8080"] = url.split("://", 1)[1]
        components = []
        for name in (
            "airflow-scheduler",
            "airflow-dag-processor",
            "airflow-triggerer",
            "airflow-worker",
        ):
            args, probe, env = airflow_component(name, localizer, tmp_path)
            log = tmp_path / f"{name}.log"
            process = stack.enter_context(started(args, env, cwd=tmp_path, log=log))
            components.append((process, probe, env, log))
        for process, probe, env, log in components:
            wait_healthy(process, probe, env, log, timeout_s=180.0)

        # The DAG processor parses the image's DAGs, in the image's environment, without error.
        auth = {"Authorization": f"Bearer {token}"}
        expected = {p.name for p in (REPO / "dags").glob("*.py") if p.name != "__init__.py"}

        def parsed() -> tuple[set[str], dict]:
            dags = httpx.get(f"{url}/api/v2/dags", headers=auth, timeout=60).json()["dags"]
            errors = httpx.get(f"{url}/api/v2/importErrors", headers=auth, timeout=60).json()
            return {Path(d["fileloc"]).name for d in dags}, errors

        files, errors = _poll(parsed, lambda r: r[0] >= expected or r[1]["total_entries"] > 0)
        assert errors["total_entries"] == 0, errors
        assert files == expected


def _poll(fetch: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 180.0) -> T:
    """Fetch until ``done`` holds (or time is up); returns the last answer."""
    deadline = time.monotonic() + timeout_s
    while not done(answer := fetch()) and time.monotonic() < deadline:
        time.sleep(2)
    return answer


def test_every_image_is_covered() -> None:
    assert set(SERVICE_OF) == set(image_names())
