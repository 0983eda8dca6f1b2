"""/predict latency with the shadow challenger off and on: the cost of scoring @challenger too.

    uv run python benchmarks/shadow.py [--shares 0,0.1,1] [--rounds 5] [--duration 4]
                                       [--warmup 1] [--levels 1,4] [--workers N] [--quick]

Sets up what benchmarks/serve.py sets up (a private embedded PostgreSQL and MLflow server under
a temporary folder, :func:`benchmarks.serve.set_up`), trains two versions on the cleaned 5k-row
sample with the project's code: ``--production`` (default lightgbm) made production and
``--challenger`` (default xgboost) given the ``challenger`` alias. Then it starts one
``tasador serve`` per share of ``--shares`` (0 = off; default also the setting's default and
1.0, every request), each with ``TASADOR_SERVING_SHADOW_SHARE`` set to it and a state folder of
its own, all at once; waits until every worker serves production (and, with a share, shadows the
challenger); and loads ``POST /predict`` with single-listing requests at each concurrency of
``--levels`` with serve.py's closed-loop load generator, one server at a time.

Interleaved, because on a small machine the drift between two runs a minute apart (other
processes, the CPU's clock) is larger than the difference sought: each level is measured in
``--rounds`` slices of ``--duration`` seconds per share, the shares' order alternating from round
to round, so every share sees the same conditions. It prints per share and level the median over
rounds of requests/s, p50 and p99, the change against share 0, and the servers' CPU per request
(what scoring the challenger and writing its rows really costs, which latency on an idle core
hides), then how many shadow rows RAW holds (with the rows dropped for a full queue). The goal
(docs/benchmarks.md): p50 and p99 with the default share within 10% of off. No assertions; the
load average is printed beside the figures. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from measure import load_note, table
from serve import (
    HOST,
    Figures,
    Server,
    http_request,
    listings,
    measure,
    register_model,
    set_up,
    tasador_serve,
    tear_down,
    wait_for,
)

from tasador.core.process import prepare_process

GOAL = 0.10  # latency with the default share within 10% of shadow scoring off


def parse_args() -> argparse.Namespace:
    from tasador.core.config import Settings

    default = Settings.flat_fields()["serving_shadow_share"].default
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", default=f"0,{default:g},1", help="shadow shares to compare")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved slices per level")
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per slice")
    parser.add_argument("--warmup", type=float, default=1.0, help="discarded seconds per slice")
    parser.add_argument("--levels", default="1,4", help="single-row concurrency levels")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--production", default="lightgbm", help="family served")
    parser.add_argument("--challenger", default="xgboost", help="family shadowed")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s, 0.5 s warmup")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 3, 2.0, 0.5
    args.shares = [float(x) for x in args.shares.split(",") if x]
    args.levels = [int(x) for x in args.levels.split(",") if x]
    args.default_share = default
    return args


def shadow_counts(settings: Any, port: int) -> tuple[int, float]:
    """(shadow rows in RAW, rows dropped as /metrics of one worker says)."""
    import httpx
    import sqlalchemy as sa

    from tasador.core import db

    with db.engine("raw", settings.databases).connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM shadow_predictions")).scalar_one()
    metrics = httpx.get(f"http://{HOST}:{port}/metrics", timeout=10).text
    found = re.search(r"^tasador_shadow_dropped_rows_total (\S+)$", metrics, re.M)
    return int(stored), float(found.group(1)) if found else 0.0


@contextlib.contextmanager
def share_server(
    settings: Any, versions: tuple[str, str], share: float, args: argparse.Namespace
) -> Iterator[Server]:
    """`tasador serve` with ``share``, in a state folder of its own (its spool, metrics and
    alias decisions are not the other servers'), once every worker is ready."""
    production, challenger = versions
    own = settings.updated(state_dir=settings.state_dir / f"share-{share:g}")
    own.state_dir.mkdir()
    env = {"TASADOR_SERVING_SHADOW_SHARE": str(share)}
    with tasador_serve(own, production, args.workers, env) as (server, _):
        if share > 0:  # every worker follows the challenger alias before the load starts
            for _ in range(4 * args.workers):
                wait_for(
                    server,
                    "/ready",
                    lambda body: body["shadow"]["challenger_version"] == challenger,
                )
        yield server


@dataclasses.dataclass
class Level:
    """One share at one concurrency: its slices, summarized by medians."""

    share: float
    concurrency: int
    slices: list[Figures]

    def median(self, figure: str) -> float:
        return float(np.median([getattr(f, figure) for f in self.slices]))

    @property
    def cpu_ms_per_request(self) -> float:
        requests = sum(f.requests for f in self.slices)
        return sum(f.server_cpu_s for f in self.slices) * 1000.0 / max(1, requests)


def run_levels(
    pool: Any, servers: dict[float, Server], bodies: list[bytes], args: argparse.Namespace
) -> list[Level]:
    levels = []
    requests = {
        share: [http_request(server.port, "/predict", b) for b in bodies]
        for share, server in servers.items()
    }
    for concurrency in args.levels:
        by_share = {share: Level(share, concurrency, []) for share in servers}
        for round_ in range(args.rounds):
            order = list(servers) if round_ % 2 == 0 else list(servers)[::-1]
            for share in order:
                measured = measure(pool, servers[share], requests[share], 1, concurrency, args)
                by_share[share].slices.append(measured)
        for level in by_share.values():
            print(
                f"  share {level.share:g}, {concurrency} connections: {level.median('per_s'):,.0f} "
                f"req/s, p50 {level.median('p50_ms'):.2f} ms, p99 {level.median('p99_ms'):.2f} ms "
                f"(medians of {args.rounds}), {level.cpu_ms_per_request:.3f} CPU ms/request, "
                f"{sum(f.errors for f in level.slices)} errors ({load_note()})",
                flush=True,
            )
        levels += by_share.values()
    return levels


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
            settings.mlflow.model_name, registry.CHALLENGER_ALIAS, challenger
        )
        print(
            f"production: {args.production} version {production}; challenger: "
            f"{args.challenger} version {challenger}; {args.workers} workers",
            flush=True,
        )
        pool = multiprocessing.get_context("spawn").Pool(args.clients)
        with contextlib.ExitStack() as stack:
            servers = {
                share: stack.enter_context(
                    share_server(settings, (production, challenger), share, args)
                )
                for share in args.shares
            }
            levels = run_levels(pool, servers, bodies.ours_rows, args)
            time.sleep(2.0)  # the last shadow rows reach RAW
            for share, server in servers.items():
                stored, dropped = shadow_counts(settings, server.port)
                print(f"  share {share:g}: rows dropped (one worker's count) {dropped:,.0f}")
            print(f"  shadow rows in RAW, all shares together: {stored:,}")
        print()
        print(load_note())
        print(
            f"{args.rounds} interleaved slices of {args.duration:g} s per share and level, each "
            f"after {args.warmup:g} s warm-up; figures are medians over the slices"
        )
        rows = [
            [
                "share", "connections", "req/s", "p50 ms", "p99 ms", "p50 vs off", "p99 vs off",
                "server CPU ms/request",
            ]
        ]  # fmt: skip
        off = {level.concurrency: level for level in levels if level.share == 0}
        for level in sorted(levels, key=lambda x: (x.share, x.concurrency)):
            base = off.get(level.concurrency)
            p50, p99 = level.median("p50_ms"), level.median("p99_ms")
            rows.append(
                [
                    f"{level.share:g}",
                    str(level.concurrency),
                    f"{level.median('per_s'):,.0f}",
                    f"{p50:.2f}",
                    f"{p99:.2f}",
                    f"{p50 / base.median('p50_ms') - 1:+.1%}" if base else "-",
                    f"{p99 / base.median('p99_ms') - 1:+.1%}" if base else "-",
                    f"{level.cpu_ms_per_request:.3f}",
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
