import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from datasource.api import EXHAUSTED_DETAIL, create_app
from datasource.generator import generate_listings
from tasador.core.columns import RAW_COLUMNS
from tasador.core.payload import parse_payload
from tasador.core.services import free_port

REPO = Path(__file__).resolve().parents[2]
SCALE = 0.001  # every course batch at its minimum of 200 rows


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(scale=SCALE, state_dir=tmp_path, seed=5))


def _get(client: TestClient, **params: object) -> httpx.Response:
    return client.get("/data", params=params)


def _sequence(client: TestClient, group: int) -> list[dict]:
    """Every remaining batch of the group, checking that the API then says it is exhausted."""
    bodies = []
    for _ in range(100):
        response = _get(client, group_number=group)
        if response.status_code != 200:
            break
        bodies.append(response.json())
    assert response.status_code == 400
    return bodies


def test_batch_shape_is_the_course_apis(client: TestClient) -> None:
    response = _get(client, group_number=3)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["group_number", "day", "batch_number", "data"]
    assert (body["group_number"], body["day"], body["batch_number"]) == (3, None, 0)
    assert len(body["data"]) == 200
    row = body["data"][0]
    assert list(row) == list(RAW_COLUMNS)
    for column in ("brokered_by", "street", "zip_code", "price", "bed", "bath"):
        assert isinstance(row[column], float), column
    assert row["status"] == "for_sale" and isinstance(row["prev_sold_date"], str)


def test_day_is_echoed_and_has_its_own_cursor(client: TestClient) -> None:
    _get(client, group_number=1, day="Tuesday")
    body = _get(client, group_number=1, day="Tuesday").json()
    assert (body["day"], body["batch_number"]) == ("Tuesday", 1)
    assert _get(client, group_number=1, day="Wednesday").json()["batch_number"] == 0
    assert _get(client, group_number=1).json()["batch_number"] == 0


def test_rows_as_lists_in_column_order(client: TestClient) -> None:
    as_lists = _get(client, group_number=2, format="list").json()
    client.get("/restart_data_generation", params={"group_number": 2})
    as_records = _get(client, group_number=2).json()
    assert as_lists["batch_number"] == as_records["batch_number"] == 0
    assert as_lists["data"] == [[r[c] for c in RAW_COLUMNS] for r in as_records["data"]]


def test_exhaustion_answers_400_with_the_courses_detail(client: TestClient) -> None:
    bodies = _sequence(client, 4)
    assert [b["batch_number"] for b in bodies] == [0, 1, 2, 3, 4, 5]
    response = _get(client, group_number=4)
    assert response.status_code == 400
    assert response.json() == {"detail": EXHAUSTED_DETAIL}


def test_restart_replays_the_same_sequence(client: TestClient) -> None:
    first = _sequence(client, 5)
    assert client.get("/restart_data_generation", params={"group_number": 5}).json() == {"ok": True}
    assert _sequence(client, 5) == first


def test_groups_do_not_disturb_each_other(tmp_path: Path) -> None:
    busy = TestClient(create_app(scale=SCALE, state_dir=tmp_path / "a", seed=5))
    quiet = TestClient(create_app(scale=SCALE, state_dir=tmp_path / "b", seed=5))
    for _ in range(3):
        _get(busy, group_number=1)
    busy.get("/restart_data_generation", params={"group_number": 1})
    _get(busy, group_number=1)
    # Group 2 gets the same batches whatever group 1 did, and not group 1's rows.
    quiet_two = _sequence(quiet, 2)
    assert _sequence(busy, 2) == quiet_two
    assert _get(quiet, group_number=1).json()["data"] != quiet_two[0]["data"]


def test_same_seed_same_data_in_another_app(tmp_path: Path) -> None:
    a = TestClient(create_app(scale=SCALE, state_dir=tmp_path / "a", seed=5))
    b = TestClient(create_app(scale=SCALE, state_dir=tmp_path / "b", seed=5))
    c = TestClient(create_app(scale=SCALE, state_dir=tmp_path / "c", seed=6))
    first = _get(a, group_number=9).json()
    assert _get(b, group_number=9).json() == first
    assert _get(c, group_number=9).json() != first


@pytest.mark.parametrize(
    "params",
    [
        {"group_number": 0},
        {"group_number": 11},
        {"group_number": "one"},
        {},
        {"group_number": 1, "day": "Monday"},
        {"group_number": 1, "format": "csv"},
    ],
)
def test_bad_parameters_answer_422(client: TestClient, params: dict) -> None:
    assert client.get("/data", params=params).status_code == 422
    assert _get(client, group_number=1).json()["batch_number"] == 0  # no cursor moved


def test_bad_service_options_fail_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed"):
        create_app(seed=-1, state_dir=tmp_path)
    with pytest.raises(ValueError, match="scale"):
        create_app(scale=0, state_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown scenario"):
        create_app(scenario="nope", state_dir=tmp_path)


def test_restart_validates_too(client: TestClient) -> None:
    assert client.get("/restart_data_generation", params={"group_number": 12}).status_code == 422


def test_health_metrics_and_description(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "OK"}
    _get(client, group_number=1)
    metrics = client.get("/metrics").text
    assert 'datasource_requests_total{path="/data",status="200"} 1.0' in metrics
    assert 'datasource_rows_served_total{group="1"} 200.0' in metrics
    info = client.get("/").json()
    assert info["scenario"] == "course" and len(info["batches"]) == 6


def test_drift_zoo_and_a_users_scenario_file(tmp_path: Path) -> None:
    zoo = TestClient(create_app(scenario="drift-zoo", scale=SCALE, state_dir=tmp_path))
    assert len(_sequence(zoo, 1)) == 6
    mine = tmp_path / "mine.yaml"
    mine.write_text("min_rows: 5\nbatches:\n  - {name: only, rows: 10, states: [Ohio]}\n")
    app = TestClient(create_app(scenario=mine, scale=1.0, state_dir=tmp_path))
    bodies = _sequence(app, 1)
    assert len(bodies) == 1 and {r["state"] for r in bodies[0]["data"]} == {"Ohio"}


def test_the_projects_collector_reads_every_batch_in_both_formats(tmp_path: Path) -> None:
    zoo = TestClient(create_app(scenario="drift-zoo", scale=SCALE, state_dir=tmp_path))
    for number in range(6):
        response = _get(zoo, group_number=1, format="list" if number % 2 else "records")
        split = parse_payload(response.content, 1).split
        assert not split.rejected, split.rejected[:1]
        assert len(split.rows) == 200 and all(len(r) == len(RAW_COLUMNS) for r in split.rows)


def test_csv_mode_serves_the_files_rows(tmp_path: Path) -> None:
    rows = generate_listings(3_000, seed=4)
    csv = tmp_path / "realtor-data.csv"
    rows.to_csv(csv, index=False)
    client = TestClient(create_app(csv=csv, scale=1.0, state_dir=tmp_path / "state"))
    served = [r for body in _sequence(client, 1) for r in body["data"]]
    complete = rows.dropna()
    in_plan = ~(complete["state"].eq("Georgia") & complete["price"].le(10_000))
    assert len(served) == in_plan.sum()
    assert {r["street"] for r in served} <= set(complete["street"])
    assert all(None not in r.values() for r in served)


@contextmanager
def _server(state_dir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    code = (
        "from pathlib import Path; from datasource.api import create_app, serve; "
        f"serve(create_app(scale={SCALE}, state_dir=Path({str(state_dir)!r}), seed=5), "
        f"port={port})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "the data API exited during start-up"
            assert time.monotonic() < deadline, "the data API did not start within 60 s"
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


@pytest.mark.server
def test_cursor_survives_a_restart_of_the_real_service(tmp_path: Path) -> None:
    expected = _sequence(TestClient(create_app(scale=SCALE, state_dir=tmp_path / "ref", seed=5)), 6)
    with _server(tmp_path / "live") as (url, proc):
        got = [httpx.get(f"{url}/data", params={"group_number": 6}).json() for _ in range(2)]
        proc.kill()  # no graceful shutdown: the cursor must already be on disk
    with _server(tmp_path / "live") as (url, _):
        got.append(httpx.get(f"{url}/data", params={"group_number": 6}).json())
        other = httpx.get(f"{url}/data", params={"group_number": 7}).json()
    assert [b["batch_number"] for b in got] == [0, 1, 2]
    assert got == expected[:3]
    assert other["batch_number"] == 0
