"""Bulk load speed: the RAW store's COPY path vs pandas.DataFrame.to_sql, same rows, same database;
and, with --scale, the whole ingest side of the course plan served by the data API.

    uv run python benchmarks/ingest.py [--rows 200000] [--repeat 3] [--db-url postgresql://...]
        [--clean-db-url postgresql://...]
    uv run python benchmarks/ingest.py --scale 1.0
    uv run python benchmarks/ingest.py --parse [--rows 361000]

Without --db-url it uses a throwaway database of the embedded PostgreSQL. With --scale it starts
the data API (`tasador datasource`) on the course plan at that scale and, batch by batch,
collects (fetch, parse, RAW), cleans and decides in this process, as the ingestion DAG's tasks
do, and prints each step's wall time, CPU time and peak memory (tasador.core.timings) and the
peak memory of every process involved. No model is trained, so each batch is judged against the
first (the baseline): the statistics, without the model check (benchmarks/decide.py times that).
With --parse it reads the same rows as a compact, a spaced (json.dumps' defaults) and an indented
body with the collector's reader, side by side, and, for scale, decodes each whole with
json.loads and msgspec (what the reader does not do: hold the body and its tree at once).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import pandas as pd
import psycopg
from measure import PeakMemory, load_note, postmaster_pid, table
from psycopg import sql
from pydantic import SecretStr

from datasource.generator import generate_listings
from tasador import startup
from tasador.core import clean_store, db, migrations, raw_store, services, timings
from tasador.core.config import Settings, get_settings
from tasador.core.payload import read_payload
from tasador.core.process import prepare_process
from tasador.loop import decide, ingest


def throwaway_database(settings: Settings) -> str:
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    return startup.database_url(settings.pg_dir, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path (median)")
    parser.add_argument("--db-url", help="a RAW database to write into (default: a throwaway one)")
    parser.add_argument("--clean-db-url", help="a CLEAN database (default: a throwaway one)")
    parser.add_argument(
        "--scale",
        type=float,
        help="instead: collect, clean and decide every batch of the course plan at this scale",
    )
    parser.add_argument(
        "--parse",
        action="store_true",
        help="instead: read the same rows as compact, spaced and indented bodies",
    )
    args = parser.parse_args()
    if args.scale is not None:
        plan_run(args.scale)
        return
    if args.parse:
        parse_run(args.rows, args.repeat)
        return

    settings = Settings()
    already_running = (settings.pg_dir / "postmaster.pid").exists()
    url = args.db_url or throwaway_database(settings)
    engine = db.engine_for(url)
    frame = generate_listings(args.rows, seed=7)
    # What the collector hands the store: tuples in column order, JSON-typed values.
    rows = [tuple(None if pd.isna(v) else v for v in r) for r in frame.itertuples(index=False)]
    migrations.upgrade(url, "raw")

    copy_times, to_sql_times = [], []
    text_frame = frame.astype("string")  # the same text columns the RAW table holds
    for run in range(args.repeat):  # alternate the two paths so both see the same machine load
        start = time.perf_counter()
        raw_store.store_batch(
            engine,
            group_number=1,
            day=None,
            batch_number=run,
            rows=rows,
            payload_sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
            source="benchmark",
        )
        copy_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        text_frame.to_sql("to_sql_rows", engine, if_exists="replace", index=False)
        to_sql_times.append(time.perf_counter() - start)
    copy_s, to_sql_s = statistics.median(copy_times), statistics.median(to_sql_times)

    # RAW and CLEAN are separate databases, each with its own migrations.
    clean_url = args.clean_db_url or throwaway_database(settings)
    migrations.upgrade(clean_url, "clean")
    clean_engine = db.engine_for(clean_url)
    batch_id = raw_store.list_batches(engine)[-1].id
    start = time.perf_counter()
    clean_store.clean_batch(engine, clean_engine, batch_id)
    clean_s = time.perf_counter() - start

    n = len(rows)
    print(f"rows: {n:,}, median of {args.repeat} runs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'path':<34}{'seconds':>10}{'rows/s':>12}")
    print(f"{'RAW store (COPY, one transaction)':<34}{copy_s:>10.2f}{n / copy_s:>12,.0f}")
    print(f"{'pandas DataFrame.to_sql':<34}{to_sql_s:>10.2f}{n / to_sql_s:>12,.0f}")
    print(f"{'clean RAW -> CLEAN (rules + COPY)':<34}{clean_s:>10.2f}{n / clean_s:>12,.0f}")
    print(f"COPY vs to_sql: {to_sql_s / copy_s:.1f}x faster")

    throwaways = [
        e for e, given in ((engine, args.db_url), (clean_engine, args.clean_db_url)) if not given
    ]
    if throwaways:
        with psycopg.connect(startup.server_url(settings.pg_dir), autocommit=True) as conn:
            for engine_ in throwaways:
                engine_.dispose()
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(engine_.url.database)
                    )
                )
        if not already_running:  # leave nothing running that this benchmark started
            startup.stop(settings.pg_dir)


# How a sender may lay out the same document: the data API writes compact JSON.
BODY_LAYOUTS: dict[str, dict[str, object]] = {
    "compact": {"separators": (",", ":")},
    "spaced": {},  # json.dumps' defaults: ", " and ": "
    "indented": {"indent": 2},
}


def parse_run(n_rows: int, repeat: int) -> None:
    """CPU time of reading the same rows laid out three ways (median of ``repeat`` runs each)."""
    frame = generate_listings(n_rows, seed=7)
    rows = json.loads(frame.to_json(orient="records"))  # the data API's rows, as JSON values
    document = {"group_number": 1, "day": None, "batch_number": 1, "data": rows}
    bodies = {name: json.dumps(document, **kw).encode() for name, kw in BODY_LAYOUTS.items()}
    del rows, document
    whole: dict[str, Callable[[bytes], object]] = {
        "json.loads": json.loads,
        "msgspec": msgspec.json.decode,
    }
    lines = [["body", "MB", "how", "CPU s", "rows/s", "vs compact"]]
    compact_s = 0.0
    for name, body in bodies.items():
        reader_s = _cpu_median(lambda b=body: read_payload(io.BytesIO(b), 1), repeat)
        compact_s = compact_s or reader_s
        mb = f"{len(body) / 1e6:,.1f}"
        ratio = f"{reader_s / compact_s:.2f}x"
        lines.append([name, mb, "read_payload", f"{reader_s:.2f}", _rate(n_rows, reader_s), ratio])
        for how, decode in whole.items():
            seconds = _cpu_median(lambda b=body, d=decode: d(b), repeat)
            lines.append([name, mb, f"{how} (whole)", f"{seconds:.2f}", _rate(n_rows, seconds), ""])
    print(f"rows: {n_rows:,}, median of {repeat} runs ({load_note()})")
    print(table(lines))


def _cpu_median(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _rate(n_rows: int, seconds: float) -> str:
    return f"{n_rows / seconds:,.0f}" if seconds else "-"


INGEST_STEPS = ("fetch", "parse", "raw", "clean")


def plan_run(scale: float) -> None:
    """Collect, clean and decide each batch of the course plan from a local data API."""
    base = Settings()
    already_running = (base.pg_dir / "postmaster.pid").exists()
    names = [f"bench_plan_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("raw", "clean")]
    with tempfile.TemporaryDirectory(prefix="tasador-ingest-") as tmp:
        folder = Path(tmp)
        os.environ["TASADOR_TIMINGS_FILE"] = str(folder / "timings.jsonl")
        get_settings.cache_clear()  # the steps read the setting through get_settings()
        port = services.free_port()
        settings = base.updated(
            state_dir=folder,
            raw_db_url=SecretStr(startup.database_url(base.pg_dir, names[0])),
            clean_db_url=SecretStr(startup.database_url(base.pg_dir, names[1])),
            mlflow_tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
            data_api_url=f"http://127.0.0.1:{port}",
        )
        try:
            for database in ("raw", "clean"):
                migrations.upgrade(db.database_url(database, settings.databases), database)
            command = services.tasador_command(
                "datasource", "--port", str(port), "--scale", str(scale)
            )
            env = {**os.environ, "TASADOR_STATE_DIR": str(folder)}
            log = folder / "datasource.log"
            health = f"{settings.data_api.data_api_url}/health"
            # A busy shared machine can take over a minute to start the data API.
            with services.running(command, health, log, timeout_s=300, env=env) as api:
                roots = (os.getpid(), api.pid)
                with PeakMemory(roots, extra=lambda: [postmaster_pid(base.pg_dir)]) as memory:
                    rows = _collect_plan(settings, Path(os.environ["TASADOR_TIMINGS_FILE"]))
        finally:
            for engine_ in (
                db.engine("raw", settings.databases),
                db.engine("clean", settings.databases),
            ):
                engine_.dispose()
            _drop_databases(base, names)
            if not already_running:  # leave nothing running that this benchmark started
                startup.stop(base.pg_dir)
    print(f"\ncourse plan at scale {scale}: ingest side, batch by batch ({load_note()})")
    print(table(rows))
    print("\npeak resident memory per process (MB):")
    for mb, pid, label in memory.largest():
        print(f"  {mb:>8,.0f}  {pid:>7}  {label}")


def _collect_plan(settings: Settings, timings_path: Path) -> list[list[str]]:
    header = ["batch", "rows", "clean", "cumul. clean"]
    header += [f"{s} s" for s in INGEST_STEPS] + ["collect+clean s", "decide s", "CPU s", "peak MB"]
    rows, cumulative, seen = [header], 0, 0
    while True:
        started = time.perf_counter()
        collected = ingest.collect(settings)
        if collected.batch_id is None:
            break
        report = ingest.clean(settings.databases, collected.batch_id)
        front = time.perf_counter() - started
        decision = decide.decide_batch(settings, collected.batch_id)
        records = timings.read(timings_path)[seen:]
        seen += len(records)
        by_step = {r["step"]: r for r in records}
        cumulative += report.rows_out
        cpu = sum(by_step[s]["cpu_s"] for s in (*INGEST_STEPS, "decide") if s in by_step)
        rows.append(
            [
                str(collected.batch_number),
                f"{collected.row_count:,}",
                f"{report.rows_out:,}",
                f"{cumulative:,}",
                *(f"{by_step[s]['wall_s']:.2f}" if s in by_step else "-" for s in INGEST_STEPS),
                f"{front:.2f}",
                f"{by_step['decide']['wall_s']:.2f}" if "decide" in by_step else "-",
                f"{cpu:.2f}",
                f"{max(r['peak_rss_mb'] for r in records):,.0f}",
            ]
        )
        print(f"  batch {collected.batch_number}: {decision.verdict} ({front:.1f}s)", flush=True)
    return rows


def _drop_databases(settings: Settings, names: list[str]) -> None:
    with psycopg.connect(startup.server_url(settings.pg_dir), autocommit=True) as conn:
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    prepare_process()  # a benchmark is an entry point, like the `tasador` command
    main()
