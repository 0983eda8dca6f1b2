"""The whole loop, as `make demo` runs it (through Airflow), timed per batch and per step.

    uv run python benchmarks/loop.py                    # scales 0.01 and 0.1
    uv run python benchmarks/loop.py --scale 1.0        # the course's full size (long)
    uv run python benchmarks/loop.py --scale 0.01 --scale 0.1 --trials 12 --workers 2

Each scale runs `tasador demo` in a fresh state folder (its own embedded PostgreSQL and MLflow)
with ``TASADOR_TIMINGS_FILE`` set, so every step that ``tasador.core.timings`` times (fetch,
parse, raw, clean, decide, study, refit, calibrate_ranges, shap, register, champion_challenger)
appends one JSON line from whichever Airflow task process ran it. The demo is sequential (a
batch's ingestion, then its training), so a record belongs to the batch whose fetch came last
before it. Printed: per batch and step, the wall time, CPU time and peak memory of the step's
process, with the batch's new and cumulative clean rows; and the peak memory of every process
of the run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from measure import PeakMemory, load_note, postmaster_pid, table

from tasador.core import timings

STEPS = (
    "fetch",
    "parse",
    "raw",
    "clean",
    "decide",
    "study",
    "refit",
    "calibrate_ranges",
    "shap",
    "register",
    "champion_challenger",
)


def by_batch(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Records grouped by batch: a new group starts at each fetch (the demo is sequential)."""
    groups: list[list[dict[str, Any]]] = []
    for record in sorted(records, key=lambda r: r["started_at"]):
        if record["step"] == "fetch" or not groups:
            groups.append([])
        groups[-1].append(record)
    return [g for g in groups if any(r["step"] == "clean" for r in g)]  # drop the last fetch


def run_scale(scale: float, trials: int, workers: int) -> None:
    with tempfile.TemporaryDirectory(prefix=f"tasador-loop-{scale}-") as tmp:
        folder = Path(tmp)
        path = folder / "timings.jsonl"
        env = {**os.environ, "TASADOR_STATE_DIR": str(folder), "TASADOR_TIMINGS_FILE": str(path)}
        env.pop("TASADOR_MLFLOW_TRACKING_URI", None)
        command = [sys.executable, "-m", "tasador", "demo", "--scale", str(scale)]
        command += ["--trials", str(trials), "--workers", str(workers)]
        started = time.perf_counter()
        log = folder / "demo.log"
        with log.open("w") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
            pg_dir = folder / "postgres"
            with PeakMemory([process.pid], extra=lambda: [postmaster_pid(pg_dir)]) as memory:
                code = process.wait()
        total = time.perf_counter() - started
        stop = [sys.executable, "-m", "tasador", "stop-embedded"]
        subprocess.run(stop, env=env, capture_output=True, check=False)
        if code != 0:
            print(log.read_text()[-3000:])
            raise SystemExit(f"tasador demo --scale {scale} failed (exit {code})")
        report(scale, timings.read(path), total, memory)


def report(scale: float, records: list[dict[str, Any]], total: float, memory: PeakMemory) -> None:
    print(f"\nscale {scale}: whole loop {total:.0f} s ({load_note()})")
    header = ["batch", "new rows", "cumul. rows", "step", "wall s", "CPU s", "peak MB"]
    rows, cumulative = [header], 0
    for number, group in enumerate(by_batch(records)):
        clean = next(r for r in group if r["step"] == "clean")
        cumulative += clean.get("rows_out", 0)
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for record in group:
            total_of = sums[record["step"]]
            total_of[0] += record["wall_s"]  # study: the workers' sum
            total_of[1] += record["cpu_s"]
            total_of[2] = max(total_of[2], record["peak_rss_mb"])
        for name in STEPS:
            if name in sums:
                wall, cpu, peak = sums[name]
                new = f"{clean.get('rows_out', 0):,}"
                rows.append(
                    [
                        str(number),
                        new,
                        f"{cumulative:,}",
                        name,
                        f"{wall:.2f}",
                        f"{cpu:.2f}",
                        f"{peak:,.0f}",
                    ]
                )
    print(table(rows))
    print("peak resident memory per process (MB):")
    for mb, pid, label in memory.largest():
        print(f"  {mb:>8,.0f}  {pid:>7}  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, action="append", help="repeatable")
    parser.add_argument("--trials", type=int, default=12, help="trial budget (the demo's)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for scale in args.scale or [0.01, 0.1]:
        run_scale(scale, args.trials, args.workers)


if __name__ == "__main__":
    main()
