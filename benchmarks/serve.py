"""Serving speed per model family: one version behind `tasador serve` and `mlflow models serve`.

    uv run python benchmarks/serve.py [--families ridge,random_forest,xgboost,lightgbm,catboost]
                                      [--quick] [--duration 10] [--warmup 2] [--levels 1,4,16]
                                      [--batch-levels 1,4] [--workers N] [--no-mlflow]
                                      [--no-wrk] [--explain-load 8] [--explain-only]

Sets up a private embedded PostgreSQL (a RAW database for the inference log) and a private
embedded MLflow server under a temporary state folder. For each family of ``--families`` (all
five by default, one after the other), trains a model with mid-range parameters of its search
space with the project's own code (``experiments.families.build_model``) on the cleaned 5k-row
realtor sample, registers it (``experiments.registry.log_and_register``) and points
``production`` at it. Then, one after the other and never at the same time:

- ``tasador serve`` (the project's API, subprocess, ``--workers`` worker processes: default the
  core count, as serving's own default), timed from its start to ``GET /ready`` naming that
  version, with the memory of its process tree (RSS, and PSS, which counts pages shared between
  the workers once) measured once it is ready; then ``POST /predict`` with one listing object
  per request, and with lists of ``--batch-rows``;
- the same single-row load by ``wrk`` (an external load generator, Debian package ``wrk``) at
  each level, so the absolute figures do not rest on this script's own client;
- ``mlflow models serve -m models:/<name>/<version> --env-manager local`` with as many workers:
  ``POST /invocations`` with ``{"dataframe_records": [...]}`` of the same listings.

It ends with one line per family (the table that goes into the README): how the version is
scored (fast path or pipeline), start-up and memory, single-row requests/s and p50/p99 at each
level, 1,000-row batches in rows/s, mlflow's single-row requests/s and the ratio, wrk's p50/p99
at each level, and the goals (>= 50x mlflow single-row, p99 < 10 ms at 4 connections, >= 100k
rows/s batched; with wrk, p99 <= 10 ms at 4 connections and <= 25 ms at 16: the tail as an
external client sees it, run after the batch levels, when the inference log is busiest).

Bodies are real listings of the sample (without their price), each in the form its server
accepts: our API takes the raw JSON fields, MLflow's signature wants ids as text and sizes as
floats. Before loading a server the script checks that it answers 200 and that both servers
price the same batch alike (same version).

The load generator is the same for both: ``--clients`` processes (spawned, so the GIL of one
does not cap the other), each running its share of the concurrent keep-alive HTTP/1.1
connections on asyncio (uvloop when installed). It is closed-loop: each connection sends its
next request as soon as the previous answer is read. Per level: ``--warmup`` seconds discarded,
then ``--duration`` seconds measured; requests/s counts the answers completed in that window,
latency is from writing the request to reading the whole answer. Non-2xx answers and
connection failures are counted as errors. "server CPU" is the CPU time of the server's whole
process tree over the window per request: unlike wall time it barely moves when other work
shares the machine. No assertions: it prints figures, with the load average beside them.

Explanations next to predictions (``--explain-load N``, 0 by default: skipped): single-row
``/predict`` at 1 connection, alone and then while N other connections send ``POST /explain``
back to back from a process of their own; it prints both p99s and how the explanations were
answered (200, or 429 past ``serving_max_explains``). ``--explain-only`` measures just that
(no ``mlflow models serve``, no other levels), for the first family.

Hermetic: ``TASADOR_*`` variables are ignored, except ``TASADOR_SERVING_*``, which tune the
served API (e.g. ``TASADOR_SERVING_LOG_FLUSH_S``). Every process it starts is stopped at the
end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from tasador import startup
from tasador.core.process import prepare_process
from tasador.core.services import free_port

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "realtor-sample-5k.csv"
HOST = "127.0.0.1"
MODEL_NAME = "bench-serve"
START_TIMEOUT_S = 240.0
FAMILY_PARAMS: dict[str, dict[str, Any]] = {  # mid-range of search_spaces/*.yaml
    "ridge": {"alpha": 1.0},
    "random_forest": {
        "n_estimators": 120, "max_features": 0.6, "min_samples_leaf": 5, "max_samples": 0.65,
        "bootstrap": True,
    },
    "xgboost": {"n_estimators": 300, "learning_rate": 0.05, "max_depth": 6},
    "lightgbm": {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 31},
    "catboost": {"iterations": 300, "learning_rate": 0.08, "depth": 6, "one_hot_max_size": 4},
}  # fmt: skip
GOAL_RATIO, GOAL_P99_MS, GOAL_BATCH_ROWS_S = 50.0, 10.0, 100_000.0
# wrk's single-row p99: the serving tail as an external client measures it.
GOAL_WRK_P99_MS = {4: 10.0, 16: 25.0}


# --- the load generator (runs in spawned processes: stdlib, numpy, psutil only) ----------


@dataclass(frozen=True)
class ClientSpec:
    port: int
    requests: list[bytes]  # complete HTTP requests, sent in turn
    connections: int
    start_at: float  # time.monotonic() (system-wide on Linux): when to start sending
    warmup_s: float
    duration_s: float
    offset: int  # where in ``requests`` this process's connections start


@dataclass
class ClientResult:
    latencies_ms: list[float] = field(default_factory=list)  # answers 2xx within the window
    errors: int = 0  # non-2xx or failed connections within the window
    statuses: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0  # this client process's CPU over the whole level


def http_request(port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Status, whether the connection stays open, and the body of one HTTP/1.1 answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, keep = None, False, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            keep = value != b"close"
    if chunked:
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
            pass
        body = b"".join(parts)
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body, keep = await reader.read(), False
    return status, keep, body


async def _connection(spec: ClientSpec, index: int, result: ClientResult) -> None:
    window = (spec.start_at + spec.warmup_s, spec.start_at + spec.warmup_s + spec.duration_s)
    i = spec.offset + index * 7919  # connections walk the bodies from different places
    reader = writer = None
    await asyncio.sleep(max(0.0, spec.start_at - time.monotonic()))
    while (now := time.monotonic()) < window[1]:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, spec.port)
            sent = time.monotonic()
            writer.write(spec.requests[i % len(spec.requests)])
            i += 1
            status, keep, _ = await read_response(reader)  # type: ignore[arg-type]
            done = time.monotonic()
            if window[0] <= done < window[1]:
                result.statuses[str(status)] += 1
                if 200 <= status < 300:
                    result.latencies_ms.append((done - sent) * 1000.0)
                else:
                    result.errors += 1
            if not keep:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if window[0] <= now < window[1]:
                result.errors += 1
                result.statuses[type(exc).__name__] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _client(spec: ClientSpec) -> ClientResult:
    result = ClientResult()
    await asyncio.gather(*(_connection(spec, n, result) for n in range(spec.connections)))
    return result


def run_client(spec: ClientSpec) -> ClientResult:
    """One load-generator process: ``spec.connections`` connections until the window ends."""
    started = time.process_time()
    try:
        import uvloop

        result = uvloop.run(_client(spec))
    except ImportError:
        result = asyncio.run(_client(spec))
    result.cpu_s = time.process_time() - started
    return result


# --- servers ------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    log: Path

    def cpu_s(self) -> float:
        """CPU time of the server's process tree so far (exited children not counted)."""
        try:
            root = psutil.Process(self.process.pid)
            total = 0.0
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = proc.cpu_times()
                    total += times.user + times.system
            return total
        except psutil.NoSuchProcess:
            return float("nan")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def clean_env() -> dict[str, str]:
    """This environment without TASADOR_* (each server gets exactly the settings it is given)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TASADOR_")}


@contextlib.contextmanager
def started(
    name: str, args: Sequence[str], env: dict[str, str], state: Path, port: int
) -> Iterator[Server]:
    """A server subprocess in its own session; its whole group is ended when the block ends."""
    log = state / f"{name.split()[0]}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(args), env=env, cwd=state, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = Server(name, process, port, log)
    try:
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def wait_for(server: Server, path: str, ok: Any = None) -> None:
    """Until GET ``path`` answers 200 (and ``ok(json)`` holds); fails if the server exits."""
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with code {server.process.returncode}:\n{server.tail()}"
            )
        with contextlib.suppress(httpx.TransportError, ValueError):
            answer = httpx.get(f"http://{HOST}:{server.port}{path}", timeout=5)
            if answer.status_code == 200 and (ok is None or ok(answer.json())):
                return
        time.sleep(0.25)
    raise TimeoutError(f"{server.name} not ready within {START_TIMEOUT_S:.0f}s:\n{server.tail()}")


# --- setup: data, model, registry ---------------------------------------------------------


@dataclass(frozen=True)
class Bodies:
    """The same listings in each server's request format."""

    ours_rows: list[bytes]
    ours_batches: list[bytes]
    mlflow_rows: list[bytes]
    mlflow_batches: list[bytes]
    batch_rows: int


def listings(batch_rows: int, n_rows: int = 1_000, n_batches: int = 4) -> tuple[Any, Bodies]:
    """The cleaned sample (to train on) and request bodies built from its listings."""
    import pandas as pd

    from experiments.inputs import INPUT_COLUMNS
    from serving.schema import LISTING
    from tasador.core.cleaning import clean_frame

    raw = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    frame, _ = clean_frame(raw)
    frame = frame.reset_index(drop=True)

    def record(row: pd.Series, for_mlflow: bool) -> dict[str, Any]:
        """A listing as a client sends it to us (ids and counts as JSON numbers), or as the
        logged model's signature wants it (ids as text, sizes as floats)."""
        out: dict[str, Any] = {}
        for column in INPUT_COLUMNS:
            value = row[column]
            if pd.isna(value):
                value = None
            elif column == "prev_sold_date":
                value = value.date().isoformat()
            elif for_mlflow or column not in ("brokered_by", "street", "bed", "bath"):
                value = value if isinstance(value, float) else str(value)
            else:  # ids (digit text) and counts (floats): JSON integers
                number = float(value)
                value = int(number) if number.is_integer() else number
            out[column] = value
        return out

    records = [(record(row, False), record(row, True)) for _, row in frame.iterrows()]
    valid = []
    for pair in records:
        with contextlib.suppress(ValueError):  # exactly what serving parses
            LISTING.validate_json(json.dumps(pair[0]))
            valid.append(pair)
    if len(valid) < len(records):
        print(f"  {len(records) - len(valid)} listings refused by serving's schema, left out")
    rng = random.Random(0)
    singles = rng.sample(valid, min(n_rows, len(valid)))
    batches = [rng.sample(valid, min(batch_rows, len(valid))) for _ in range(n_batches)]

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    bodies = Bodies(
        ours_rows=[dumps(o) for o, _ in singles],
        ours_batches=[dumps([o for o, _ in batch]) for batch in batches],
        mlflow_rows=[dumps({"dataframe_records": [t]}) for _, t in singles],
        mlflow_batches=[dumps({"dataframe_records": [t for _, t in b]}) for b in batches],
        batch_rows=len(batches[0]),
    )
    return frame, bodies


def register_model(
    settings: Any, frame: Any, family: str, validation_rows: int = 0, promote: bool = True
) -> tuple[str, Any]:
    """Train ``family`` on the sample with the project's code, register it, make it production
    (unless not ``promote``); (version, fitted model).

    ``validation_rows``: that many rows stored as its validation sample (serving checks them)."""
    from experiments import registry, runs
    from experiments.families import build_model
    from tasador.core import lineage
    from tasador.core.columns import TARGET

    model = build_model(family, FAMILY_PARAMS[family], n_jobs=1, seed=0)
    model.fit(frame.drop(columns=[TARGET]), frame[TARGET].to_numpy())
    client = registry.connect(settings)
    experiment = runs.experiment_id(client, settings.mlflow.experiment_name)
    tags = {
        lineage.BATCH_IDS: lineage.encode_batch_ids((1,)),
        lineage.RETRAIN_REASON: "benchmark model",
        "family": family,
    }
    run_id = runs.create_run(client, experiment, f"bench-{family}", tags)
    example = frame.drop(columns=[TARGET]).head(3)
    validation = frame.sample(validation_rows, random_state=0) if validation_rows else None
    version = registry.log_and_register(
        model, example, settings.mlflow, run_id, tags, validation=validation
    )
    runs.end(client, run_id)
    if promote:
        registry.set_production(client, settings.mlflow, version.version)
    return str(version.version), model


def in_process(model: Any, body: bytes, repeats: int = 20) -> dict[str, float]:
    """CPU ms of each step /predict takes for one batch body, in this process (best of 3):
    validating it column by column (what serving does) and listing by listing (what it did, and
    still does to name the faults of a bad body), scoring, and building the log's rows."""
    from datetime import UTC, datetime

    from experiments.scoring.artifact import of_model
    from serving.batch import BatchParser
    from serving.fast_path import FastScorer
    from serving.inference_log import Entry
    from serving.schema import listings_adapter

    parser, adapter = BatchParser(10**6), listings_adapter(10**6)
    scorer = FastScorer(of_model(model))  # as serving loads it (its booster walk aside)
    columns = parser.many(body)
    assert columns is not None, "the benchmark's batch is valid"
    entry = Entry("predict", 200, datetime.now(UTC), 1.0, columns, [1.0] * len(columns))

    def cpu_ms(step: Any) -> float:
        step()
        best = float("inf")
        for _ in range(3):
            began = time.process_time()
            for _ in range(repeats):
                step()
            best = min(best, (time.process_time() - began) / repeats * 1000.0)
        return best

    return {
        "columns": cpu_ms(lambda: parser.many(body)),
        "Listing": cpu_ms(lambda: adapter.validate_json(body)),
        "score": cpu_ms(lambda: scorer.predict(columns)),
        "log rows": cpu_ms(entry.to_rows),
    }


# --- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    kind: str  # "1 row" or "N rows"
    concurrency: int
    server: str
    requests: int
    rows_per_request: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    statuses: dict[str, int]
    server_cpu_s: float
    client_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.requests / self.duration_s

    @property
    def rows_per_s(self) -> float:
        return self.per_s * self.rows_per_request

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_s * 1000.0 / self.requests if self.requests else float("nan")


def measure(
    pool: Any,
    server: Server,
    requests: list[bytes],
    rows_per_request: int,
    concurrency: int,
    args: argparse.Namespace,
) -> Figures:
    processes = min(args.clients, concurrency)
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    start_at = time.monotonic() + 1.0  # time for every client process to get its spec
    specs = [
        ClientSpec(
            port=server.port,
            requests=requests,
            connections=share,
            start_at=start_at,
            warmup_s=args.warmup,
            duration_s=args.duration,
            offset=i * 104_729,
        )
        for i, share in enumerate(shares)
    ]
    pending = pool.map_async(run_client, specs)
    time.sleep(max(0.0, start_at + args.warmup - time.monotonic()))
    cpu_before = server.cpu_s()
    time.sleep(max(0.0, start_at + args.warmup + args.duration - time.monotonic()))
    cpu_after = server.cpu_s()
    results: list[ClientResult] = pending.get(args.warmup + args.duration + 120)
    latencies = np.array([x for r in results for x in r.latencies_ms])
    p50, p99 = np.percentile(latencies, [50, 99]) if len(latencies) else (np.nan, np.nan)
    statuses: Counter[str] = Counter()
    for r in results:
        statuses.update(r.statuses)
    return Figures(
        kind="1 row" if rows_per_request == 1 else f"{rows_per_request:,} rows",
        concurrency=concurrency,
        server=server.name,
        requests=len(latencies),
        rows_per_request=rows_per_request,
        duration_s=args.duration,
        p50_ms=float(p50),
        p99_ms=float(p99),
        errors=sum(r.errors for r in results),
        statuses=dict(statuses),
        server_cpu_s=cpu_after - cpu_before,
        client_cpu_s=sum(r.cpu_s for r in results),
    )


def check(server: Server, path: str, body: bytes) -> list[float]:
    """One request before the load: it must answer 200; returns its predictions."""
    import httpx

    answer = httpx.post(
        f"http://{HOST}:{server.port}{path}",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    if answer.status_code != 200:
        raise RuntimeError(f"{server.name} {path}: {answer.status_code} {answer.text[:2000]}")
    return [float(p) for p in answer.json()["predictions"]]


def load_server(
    pool: Any, server: Server, path: str, rows: list[bytes], batches: list[bytes], batch_rows: int,
    args: argparse.Namespace,
) -> list[Figures]:  # fmt: skip
    singles = [http_request(server.port, path, b) for b in rows]
    many = [http_request(server.port, path, b) for b in batches]
    figures = []
    for concurrency in args.levels:
        figures.append(measure(pool, server, singles, 1, concurrency, args))
        report(figures[-1])
    for concurrency in args.batch_levels:
        figures.append(measure(pool, server, many, batch_rows, concurrency, args))
        report(figures[-1])
    return figures


def report(f: Figures) -> None:
    print(
        f"  {f.server}, {f.kind} x {f.concurrency}: {f.per_s:,.0f} req/s, p50 {f.p50_ms:.1f} ms, "
        f"p99 {f.p99_ms:.1f} ms, {f.errors} errors (load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )


@dataclass(frozen=True)
class Footprint:
    workers: int
    ready_s: float  # from starting `tasador serve` to /ready naming the version
    rss_mb: float  # the process tree's resident memory (pages shared by workers counted twice)
    pss_mb: float  # proportional: shared pages split between the processes sharing them
    scoring: str  # what /model says: fast path or pipeline, and why


def footprint(server: Server) -> tuple[float, float]:
    """RSS and PSS of the server's process tree, in MB."""
    rss = pss = 0.0
    root = psutil.Process(server.process.pid)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            memory = proc.memory_full_info()
            rss += memory.rss
            pss += memory.pss
    return rss / 2**20, pss / 2**20


@contextlib.contextmanager
def tasador_serve(
    settings: Any, version: str, workers: int, env: dict[str, str] | None = None
) -> Iterator[tuple[Server, float]]:
    """`tasador serve` with ``workers`` processes (and ``env`` on top of ``settings``), once every
    worker serves ``version``; yields it and the seconds from its start to /ready."""
    from tasador.core.config import settings_env
    from tasador.core.services import tasador_command

    port = free_port()
    env = {
        **clean_env(), **settings_env(settings), "TASADOR_SERVING_WORKERS": str(workers),
        **(env or {}),
    }  # fmt: skip
    command = tasador_command("serve", "--host", HOST, "--port", str(port))
    began = time.monotonic()
    with started("tasador serve", command, env, settings.state_dir, port) as server:
        wait_for(server, "/ready", lambda body: (body.get("model") or {}).get("version") == version)
        ready_s = time.monotonic() - began
        # Every worker loaded it (the kernel hands fresh connections to any of them).
        wait_for(server, "/ready", lambda _: every_worker_serves(port, version, workers))
        yield server, ready_s


def serve_ours(
    pool: Any, settings: Any, version: str, bodies: Bodies, args: argparse.Namespace
) -> tuple[list[Figures], list[float], Footprint, list[WrkFigures]]:
    import httpx

    with tasador_serve(settings, version, args.workers) as (server, ready_s):
        port = server.port
        time.sleep(1.0)  # let start-up garbage settle before measuring memory
        rss, pss = footprint(server)
        scoring = httpx.get(f"http://{HOST}:{port}/model", timeout=10).json()["scoring"]
        print(
            f"  tasador serve: {args.workers} workers serving version {version} on port {port}, "
            f"ready {ready_s:.1f} s after start, {rss:,.0f} MB RSS / {pss:,.0f} MB PSS; "
            f"scoring: {scoring}",
            flush=True,
        )
        prices = check(server, "/predict", bodies.ours_batches[0])
        check(server, "/predict", bodies.ours_rows[0])
        figures = [] if args.explain_only else load_server(
            pool, server, "/predict", bodies.ours_rows, bodies.ours_batches, bodies.batch_rows, args
        )  # fmt: skip
        cross = [] if args.explain_only or not args.wrk else [
            wrk(port, "/predict", bodies.ours_rows, c, args) for c in args.levels
        ]  # fmt: skip
        if args.explain_load:
            explain_load(pool, server, bodies, args)
    return figures, prices, Footprint(args.workers, ready_s, rss, pss, scoring), cross


def every_worker_serves(port: int, version: str, workers: int, tries: int = 40) -> bool:
    """Fresh connections reach ``workers`` distinct worker processes, all serving ``version``."""
    import httpx

    seen: dict[int, str | None] = {}
    for _ in range(tries):
        with contextlib.suppress(httpx.TransportError, ValueError, KeyError):
            body = httpx.get(
                f"http://{HOST}:{port}/ready", timeout=5, headers={"Connection": "close"}
            ).json()
            seen[body["worker"]["pid"]] = (body.get("model") or {}).get("version")
    return len(seen) >= workers and set(seen.values()) == {version}


# --- wrk: the external load generator -----------------------------------------------------


@dataclass(frozen=True)
class WrkFigures:
    connections: int
    per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # non-2xx answers and socket errors


def _lua_text(body: bytes) -> str:
    return "[==[" + body.decode() + "]==]"


def _milliseconds(text: str) -> float:
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 6e4)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float("nan")


def wrk(port: int, path: str, bodies: list[bytes], connections: int, args: argparse.Namespace
) -> WrkFigures:  # fmt: skip
    """``wrk`` POSTing ``bodies`` in turn on ``connections`` keep-alive connections."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        "local bodies = {" + ",".join(_lua_text(b) for b in bodies[:200]) + "}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        f'  return wrk.format("POST", "{path}", '
        '{["Content-Type"] = "application/json"}, bodies[i])\n'
        "end\n"
    )
    threads = min(2, connections)
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{math.ceil(args.duration + args.warmup)}s",
        "--latency", "-s", str(script), f"http://{HOST}:{port}{path}",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        out = done.stdout
        if "Requests/sec:" not in out:
            print(f"  wrk did not run: {(done.stdout + done.stderr)[-500:]}", flush=True)
    finally:
        script.unlink(missing_ok=True)
    per_s, errors = float("nan"), 0
    at = {"50%": float("nan"), "90%": float("nan"), "99%": float("nan"), "max": float("nan")}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            per_s = float(parts[1])
        elif parts[:1] and parts[0] in at:
            at[parts[0]] = _milliseconds(parts[1])
        elif parts[:1] == ["Latency"] and len(parts) >= 4:  # avg, stdev, max
            at["max"] = _milliseconds(parts[3])
        elif "Non-2xx" in line or line.strip().startswith("Socket errors"):
            errors += sum(int(x.strip(",")) for x in parts if x.strip(",").isdigit())
    p50, p90, p99, top = at["50%"], at["90%"], at["99%"], at["max"]
    figures = WrkFigures(connections, per_s, p50, p90, p99, top, errors)
    print(
        f"  wrk, 1 row x {connections}: {per_s:,.0f} req/s, p50 {p50:.2f} ms, p90 {p90:.2f} ms, "
        f"p99 {p99:.2f} ms, max {top:.1f} ms, {errors} errors "
        f"(load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    return figures


def explain_load(pool: Any, server: Server, bodies: Bodies, args: argparse.Namespace) -> None:
    """Single-row /predict p99 alone, then under ``args.explain_load`` concurrent /explain."""
    singles = [http_request(server.port, "/predict", b) for b in bodies.ours_rows]
    explains = [http_request(server.port, "/explain", b) for b in bodies.ours_rows]
    check_explain = run_client(  # one explanation must work before it is loaded
        ClientSpec(server.port, explains[:1], 1, time.monotonic(), 0.0, 5.0, 0)
    )
    if not check_explain.latencies_ms:
        raise RuntimeError(f"/explain does not answer 200: {dict(check_explain.statuses)}")
    alone = measure(pool, server, singles, 1, 1, args)
    explainer = multiprocessing.get_context("spawn").Pool(1)
    try:
        span = args.warmup + args.duration + 3.0  # covers the whole predict level
        spec = ClientSpec(server.port, explains, args.explain_load, time.monotonic(), 0.5, span, 0)
        pending = explainer.apply_async(run_client, (spec,))
        time.sleep(1.0)  # the explanations are running before /predict is measured
        loaded = measure(pool, server, singles, 1, 1, args)
        explained = pending.get(span + 120)
    finally:
        explainer.terminate()
        explainer.join()
    print(
        f"  /predict p99 at 1 connection: {alone.p99_ms:.1f} ms alone, {loaded.p99_ms:.1f} ms "
        f"under {args.explain_load} concurrent /explain (p50 {alone.p50_ms:.1f} -> "
        f"{loaded.p50_ms:.1f} ms, {loaded.errors} errors); /explain answers: "
        f"{dict(explained.statuses)}",
        flush=True,
    )


def serve_mlflow(
    pool: Any, uri: str, version: str, bodies: Bodies, args: argparse.Namespace, state: Path
) -> tuple[list[Figures], list[float]]:
    port = free_port()
    env = {
        **clean_env(),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",  # as tasador.core.process sets it
        # It execs `uvicorn` by name: this interpreter's scripts must come first on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [
        sys.executable, "-m", "mlflow", "models", "serve",
        "-m", f"models:/{MODEL_NAME}/{version}",
        "--env-manager", "local", "-h", HOST, "-p", str(port), "--workers", str(args.workers),
    ]  # fmt: skip
    with started("mlflow models serve", command, env, state, port) as server:
        wait_for(server, "/ping")
        print(f"  mlflow models serve is serving version {version} on port {port}", flush=True)
        prices = check(server, "/invocations", bodies.mlflow_batches[0])
        check(server, "/invocations", bodies.mlflow_rows[0])
        figures = load_server(
            pool, server, "/invocations", bodies.mlflow_rows, bodies.mlflow_batches,
            bodies.batch_rows, args,
        )  # fmt: skip
    return figures, prices


# --- output -------------------------------------------------------------------------------


def table(figures: list[Figures]) -> str:
    lines = [
        "| request | connections | server | requests/s | rows/s | p50 ms | p99 ms | errors "
        "| server CPU ms/request | client CPU s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in figures:
        lines.append(
            f"| {f.kind} | {f.concurrency} | {f.server} | {f.per_s:,.0f} | {f.rows_per_s:,.0f} "
            f"| {f.p50_ms:.1f} | {f.p99_ms:.1f} | {f.errors} | {f.cpu_ms_per_request:.2f} "
            f"| {f.client_cpu_s:.1f} |"
        )
    return "\n".join(lines)


def comparison(ours: list[Figures], theirs: list[Figures]) -> str:
    lines = [
        "| request | connections | requests/s, tasador ÷ mlflow | p50, mlflow ÷ tasador "
        "| p99, mlflow ÷ tasador | CPU/request, mlflow ÷ tasador |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a, b in zip(ours, theirs, strict=True):
        lines.append(
            f"| {a.kind} | {a.concurrency} | {a.per_s / b.per_s:.1f}× | {b.p50_ms / a.p50_ms:.1f}× "
            f"| {b.p99_ms / a.p99_ms:.1f}× | {b.cpu_ms_per_request / a.cpu_ms_per_request:.1f}× |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class FamilyRun:
    family: str
    version: str
    footprint: Footprint
    ours: list[Figures]
    theirs: list[Figures]  # empty with --no-mlflow
    cross: list[WrkFigures]  # empty with --no-wrk
    gap: float  # largest relative difference between the two servers' prices of one batch


def _single(figures: list[Figures], connections: int) -> Figures | None:
    return next(
        (f for f in figures if f.rows_per_request == 1 and f.concurrency == connections), None
    )


def _batched(figures: list[Figures]) -> float:
    return max((f.rows_per_s for f in figures if f.rows_per_request > 1), default=float("nan"))


def family_table(runs: list[FamilyRun], levels: list[int]) -> str:
    """One line per family: the README's serving table."""
    head = ["family", "scoring", "ready s", "PSS MB"]
    head += [f"req/s @{c}" for c in levels] + [f"p50/p99 ms @{c}" for c in levels]
    head += ["CPU ms/req @1", "batch rows/s", "CPU µs/row batched"]
    head += ["mlflow req/s @1", "× mlflow", "wrk req/s"]
    head += [f"wrk p50/p99 ms @{c}" for c in levels] + ["goals"]
    lines = ["| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * (len(head) - 2)]
    for run in runs:
        singles = [_single(run.ours, c) for c in levels]
        theirs = _single(run.theirs, 1)
        ratios = [
            a.per_s / b.per_s
            for c in levels
            if (a := _single(run.ours, c)) and (b := _single(run.theirs, c)) and b.per_s
        ]
        ratio = min(ratios) if ratios else float("nan")
        at4 = _single(run.ours, 4)
        batch = _batched(run.ours)
        batches = [f for f in run.ours if f.rows_per_request > 1]
        row_cpu = min(
            (f.cpu_ms_per_request * 1000 / f.rows_per_request for f in batches),
            default=float("nan"),
        )
        by_wrk = {w.connections: w for w in run.cross}
        goals = [
            ("50×", ratio >= GOAL_RATIO),
            ("p99", at4 is not None and at4.p99_ms < GOAL_P99_MS),
            ("100k", batch >= GOAL_BATCH_ROWS_S),
            *[
                (f"wrk p99 @{c}", c in by_wrk and by_wrk[c].p99_ms <= limit)
                for c, limit in GOAL_WRK_P99_MS.items()
                if run.cross
            ],
        ]
        cells = [
            run.family,
            run.footprint.scoring.split(" (")[0],
            f"{run.footprint.ready_s:.1f}",
            f"{run.footprint.pss_mb:,.0f}",
            *[f"{f.per_s:,.0f}" if f else "-" for f in singles],
            *[f"{f.p50_ms:.1f} / {f.p99_ms:.1f}" if f else "-" for f in singles],
            f"{singles[0].cpu_ms_per_request:.2f}" if singles and singles[0] else "-",
            f"{batch:,.0f}",
            f"{row_cpu:.1f}",
            f"{theirs.per_s:,.1f}" if theirs else "-",
            f"{ratio:,.0f}×" if ratios else "-",
            " / ".join(f"{w.per_s:,.0f}" for w in run.cross) or "-",
            *[
                f"{by_wrk[c].p50_ms:.1f} / {by_wrk[c].p99_ms:.1f}" if c in by_wrk else "-"
                for c in levels
            ],
            ", ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in goals),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def answers_other_than_200(runs: list[FamilyRun]) -> dict[str, dict[str, int]]:
    found = {}
    for run in runs:
        for f in run.ours + run.theirs:
            if set(f.statuses) - {"200"}:
                found[f"{run.family}: {f.server} {f.kind} x {f.concurrency}"] = f.statuses
    return found


# --- main ---------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds per level")
    parser.add_argument("--levels", default="1,4,16", help="single-row concurrency levels")
    parser.add_argument("--batch-levels", default="1,4", help="batch concurrency levels")
    parser.add_argument("--batch-rows", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--families", default=",".join(FAMILY_PARAMS), help="comma-separated model families"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes of each server"
    )
    parser.add_argument("--no-mlflow", dest="mlflow", action="store_false", help="skip mlflow")
    parser.add_argument("--no-wrk", dest="wrk", action="store_false", help="skip the wrk check")
    parser.add_argument("--quick", action="store_true", help="2 s levels, 0.5 s warmup")
    parser.add_argument(
        "--explain-load", type=int, default=0, help="concurrent /explain next to /predict (0: off)"
    )
    parser.add_argument(
        "--explain-only", action="store_true", help="only /predict under /explain load"
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 2.0, 0.5
    args.levels = [int(x) for x in args.levels.split(",") if x]
    args.batch_levels = [int(x) for x in args.batch_levels.split(",") if x]
    args.families = [f for f in args.families.split(",") if f]
    unknown = set(args.families) - set(FAMILY_PARAMS)
    if unknown:
        parser.error(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILY_PARAMS)}")
    if args.wrk and shutil.which("wrk") is None:
        print("wrk not found (apt-get install -y wrk): the cross-check is skipped", flush=True)
        args.wrk = False
    if args.explain_only:
        args.families = args.families[:1]
    return args


def run_family(
    pool: Any, settings: Any, uri: str, frame: Any, bodies: Bodies, family: str,
    args: argparse.Namespace,
) -> FamilyRun:  # fmt: skip
    version, model = register_model(settings, frame, family)
    print(
        f"{family}: {FAMILY_PARAMS[family]} on {len(frame):,} clean rows, {MODEL_NAME} version "
        f"{version}",
        flush=True,
    )
    steps = in_process(model, bodies.ours_batches[0])
    print(
        f"  in process, one {bodies.batch_rows:,}-row body, CPU ms: "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in steps.items())
        + f" (validated by columns, scored, logged: {sum(steps.values()) - steps['Listing']:.1f}"
        f"; load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    ours, our_prices, used, cross = serve_ours(pool, settings, version, bodies, args)
    theirs: list[Figures] = []
    gap = float("nan")
    if args.mlflow and not args.explain_only:
        theirs, their_prices = serve_mlflow(pool, uri, version, bodies, args, settings.state_dir)
        gap = float(np.max(np.abs(np.array(our_prices) - their_prices) / np.array(their_prices)))
    return FamilyRun(family, version, used, ours, theirs, cross, gap)


def _keep_on_ctrl_c() -> None:
    """Load generators ignore the terminal's Ctrl-C (sent to the whole process group): killed
    while waiting for a task, one would hold the pool's queue lock forever; the main process
    ends them with terminate() instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main() -> None:
    args = parse_args()
    for name in [n for n in os.environ if n.startswith("TASADOR_")]:
        if not name.startswith("TASADOR_SERVING_"):  # hermetic: no real database or MLflow
            del os.environ[name]
    # A SIGTERM ends the run like Ctrl-C does: through every `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="tasador-bench-serve-"))
    pool = None
    try:
        load_before = os.getloadavg()
        settings = set_up(state)
        uri = settings.mlflow.mlflow_tracking_uri
        frame, bodies = listings(args.batch_rows)
        print(
            f"{len(bodies.ours_rows):,} single-row bodies, {len(bodies.ours_batches)} bodies of "
            f"{bodies.batch_rows:,} rows",
            flush=True,
        )
        pool = multiprocessing.get_context("spawn").Pool(args.clients, initializer=_keep_on_ctrl_c)
        runs = [
            run_family(pool, settings, uri, frame, bodies, family, args) for family in args.families
        ]
        if args.explain_only:
            print(f"whole run: {time.monotonic() - began:.0f} s")
            return
        print()
        print(
            f"load average before the run (1, 5, 15 min): "
            f"{', '.join(f'{x:.1f}' for x in load_before)} on {os.cpu_count()} cores; "
            f"after: {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{args.duration:g} s measured per level after {args.warmup:g} s warm-up; "
            f"{args.workers} worker processes per server; {args.clients} load-generator "
            f"processes; wrk: {'on' if args.wrk else 'off'}"
        )
        for run in runs:
            print()
            print(
                f"{run.family} (version {run.version}; {run.footprint.scoring}; ready "
                f"{run.footprint.ready_s:.1f} s; {run.footprint.rss_mb:,.0f} MB RSS, "
                f"{run.footprint.pss_mb:,.0f} MB PSS; same batch priced alike by both servers: "
                f"largest relative difference {run.gap:.1e}):"
            )
            print(table(run.ours + run.theirs))
            if run.theirs:
                print()
                print(comparison(run.ours, run.theirs))
        print()
        print("per family:")
        print(family_table(runs, args.levels))
        print()
        print(f"answers other than 200: {answers_other_than_200(runs) or 'none'}")
        print(f"whole run: {time.monotonic() - began:.0f} s")
    finally:
        # The servers first: a pool whose worker was killed while holding the task queue's lock
        # hangs in terminate(), and must not leave PostgreSQL and MLflow running behind it.
        tear_down(state)
        if pool is not None:
            pool.terminate()
            pool.join()


def set_up(state: Path) -> Any:
    """A private embedded PostgreSQL (RAW and CLEAN migrated) and MLflow server under
    ``state``; the settings pointing at them. The caller ends them with :func:`tear_down`."""
    from pydantic import SecretStr

    from tasador.core import migrations
    from tasador.core.config import Settings

    print("setting up (PostgreSQL, MLflow) ...", flush=True)
    raw_url = startup.database_url(state / "postgres", "bench_raw")
    # Serving reads no CLEAN, but each database has its own migrations (and version table).
    clean_url = startup.database_url(state / "postgres", "bench_clean")
    for url, database in ((raw_url, "raw"), (clean_url, "clean")):
        migrations.upgrade(url, database)
    settings = Settings(
        state_dir=state,
        raw_db_url=SecretStr(raw_url),
        clean_db_url=SecretStr(clean_url),
        model_name=MODEL_NAME,
        experiment_name=MODEL_NAME,
        _env_file=None,
    )
    uri = startup.ensure_server(settings)
    return settings.updated(mlflow_tracking_uri=uri)


def tear_down(state: Path) -> None:
    """Stop what :func:`set_up` started and delete ``state``."""
    from tasador.core.config import Settings

    startup.stop_server(Settings(state_dir=state, _env_file=None))
    startup.stop(state / "postgres")
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    prepare_process()  # a benchmark is an entry point, like the `tasador` command
    main()
