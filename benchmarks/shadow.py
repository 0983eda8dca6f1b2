"""/predict latency with the shadow challenger off and on: the cost of scoring @challenger too.

    uv run python benchmarks/shadow.py [--shares 0,0.1,1] [--duration 10] [--warmup 2]
                                       [--levels 1,4] [--workers N] [--quick]

Sets up what benchmarks/serve.py sets up (a private embedded PostgreSQL and MLflow server under
a temporary folder, :func:`benchmarks.serve.set_up`), trains two versions on the cleaned 5k-row
sample with the project's code: ``--production`` (default lightgbm) made production and
``--challenger`` (default xgboost) given the ``challenger`` alias. Then for each share of
``--shares`` (0 = off; default also the setting's default and 1.0, every request) it starts
``tasador serve`` with ``TASADOR_SERVING_SHADOW_SHARE`` set to it, waits until every worker
serves production (and, with a share, shadows the challenger), and loads ``POST /predict`` with
single-listing requests at each concurrency of ``--levels`` with serve.py's closed-loop load
generator. It prints requests/s, p50 and p99 per share and level, the change against share 0,
and how many shadow rows RAW holds afterwards (with the rows dropped for a full queue). The goal
(docs/benchmarks.md): p50 and p99 with the default share within 10% of off. No assertions; the
load average is printed beside the figures. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import load_note, table
from serve import (
    HOST,
    Figures,
    http_request,
    listings,
    measure,
    register_model,
    report,
    set_up,
    tasador_serve,
    tear_down,
    wait_for,
)

from tasador.core.process import prepare_process

GOAL = 0.10  # latency with the default share within 10% of shadow scoring off


def parse_args() -> argparse.Namespace:
    from tasador.core.config import Settings

    default = Settings.model_fields["serving_shadow_share"].default
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", default=f"0,{default:g},1", help="shadow shares to compare")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds per level")
    parser.add_argument("--levels", default="1,4", help="single-row concurrency levels")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--production", default="lightgbm", help="family served")
    parser.add_argument("--challenger", default="xgboost", help="family shadowed")
    parser.add_argument("--quick", action="store_true", help="2 s levels, 0.5 s warmup")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 2.0, 0.5
    args.shares = [float(x) for x in args.shares.split(",") if x]
    args.levels = [int(x) for x in args.levels.split(",") if x]
    args.default_share = default
    return args


def shadow_counts(settings: Any, port: int) -> tuple[int, float]:
    """(shadow rows in RAW, rows dropped as /metrics of one worker says)."""
    import httpx
    import sqlalchemy as sa

    from tasador.core import db

    with db.engine("raw", settings).connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM shadow_predictions")).scalar_one()
    metrics = httpx.get(f"http://{HOST}:{port}/metrics", timeout=10).text
    found = re.search(r"^tasador_shadow_dropped_rows_total (\S+)$", metrics, re.M)
    return int(stored), float(found.group(1)) if found else 0.0


def run_share(
    pool: Any, settings: Any, versions: tuple[str, str], bodies: list[bytes], share: float,
    args: argparse.Namespace,
) -> list[Figures]:  # fmt: skip
    production, challenger = versions
    env = {"TASADOR_SERVING_SHADOW_SHARE": str(share)}
    with tasador_serve(settings, production, args.workers, env) as (server, _):
        if share > 0:  # every worker follows the challenger alias before the load starts
            for _ in range(4 * args.workers):
                wait_for(
                    server,
                    "/ready",
                    lambda body: body["shadow"]["challenger_version"] == challenger,
                )
        requests = [http_request(server.port, "/predict", b) for b in bodies]
        figures = []
        for concurrency in args.levels:
            measured = measure(pool, server, requests, 1, concurrency, args)
            figures.append(dataclasses.replace(measured, server=f"shadow share {share:g}"))
            report(figures[-1])
        time.sleep(2.0)  # the last shadow rows reach RAW
        stored, dropped = shadow_counts(settings, server.port)
        print(f"  shadow rows in RAW so far: {stored:,}; dropped (one worker): {dropped:,.0f}")
    return figures


def main() -> None:
    args = parse_args()
    for name in [n for n in os.environ if n.startswith("TASADOR_")]:
        del os.environ[name]  # hermetic: no real database or MLflow, no tuned serving
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    state = Path(tempfile.mkdtemp(prefix="tasador-bench-shadow-"))
    pool = None
    try:
        print(load_note(), flush=True)
        settings = set_up(state)
        frame, bodies = listings(batch_rows=10)
        production, _ = register_model(settings, frame, args.production)
        challenger, _ = register_model(settings, frame, args.challenger, promote=False)
        from experiments import registry

        registry.connect(settings).set_registered_model_alias(
            settings.model_name, registry.CHALLENGER_ALIAS, challenger
        )
        print(
            f"production: {args.production} version {production}; challenger: "
            f"{args.challenger} version {challenger}; {args.workers} workers",
            flush=True,
        )
        pool = multiprocessing.get_context("spawn").Pool(args.clients)
        runs = {
            share: run_share(
                pool, settings, (production, challenger), bodies.ours_rows, share, args
            )
            for share in args.shares
        }
        print()
        print(load_note())
        print(f"{args.duration:g} s measured per level after {args.warmup:g} s warm-up")
        rows = [["share", "connections", "req/s", "p50 ms", "p99 ms", "p50 vs off", "p99 vs off"]]
        off = {f.concurrency: f for f in runs.get(0.0, [])}
        for share, figures in runs.items():
            for f in figures:
                base = off.get(f.concurrency)
                rows.append(
                    [
                        f"{share:g}",
                        str(f.concurrency),
                        f"{f.per_s:,.0f}",
                        f"{f.p50_ms:.2f}",
                        f"{f.p99_ms:.2f}",
                        f"{f.p50_ms / base.p50_ms - 1:+.1%}" if base else "-",
                        f"{f.p99_ms / base.p99_ms - 1:+.1%}" if base else "-",
                    ]
                )
        print(table(rows))
        print(f"goal: share {args.default_share:g} within {GOAL:.0%} of share 0 (p50 and p99)")
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        tear_down(state)


if __name__ == "__main__":
    prepare_process()  # a benchmark is an entry point, like the `tasador` command
    main()
