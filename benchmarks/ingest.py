"""Bulk load speed: the RAW store's COPY path vs pandas.DataFrame.to_sql, same rows, same database.

    uv run python benchmarks/ingest.py [--rows 200000] [--repeat 3] [--db-url postgresql://...]
        [--clean-db-url postgresql://...]

Without --db-url it uses a throwaway database of the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time
import uuid

import pandas as pd
import psycopg
from psycopg import sql

from datasource.generator import generate_listings
from tasador import startup
from tasador.core import clean_store, db, migrations, raw_store
from tasador.core.config import Settings


def throwaway_database(settings: Settings) -> str:
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    return startup.database_url(settings.pg_dir, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path (median)")
    parser.add_argument("--db-url", help="a RAW database to write into (default: a throwaway one)")
    parser.add_argument("--clean-db-url", help="a CLEAN database (default: a throwaway one)")
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
