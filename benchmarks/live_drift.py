"""Live drift against a running deployment: send /predict traffic from another mix of states than
the training rows, then run the live drift check and print its figures.

    uv run python benchmarks/live_drift.py [--requests 2000] [--rows-per-request 1]
                                           [--states Alaska,Hawaii,Montana] [--csv PATH]
                                           [--seed 0] [--no-check]

Reads the settings from the environment (``TASADOR_*``, ``.env``) like every command: serving at
``TASADOR_SERVING_API_URL`` (with ``TASADOR_SERVING_API_KEY`` when set), RAW, CLEAN and MLflow
as the deployment has them (after ``make demo``, its ``.env``). The listings are generated
(datasource.generator) restricted to ``--states``, or, with ``--csv``, the rows of a realtor CSV
(the 5k sample) in those states. It waits until RAW's inference log holds every listing sent,
then runs the same check as ``tasador monitor`` (it stores its result, so the next scheduled
check starts after these requests) and prints the rows it read, whether it alarmed, the share of
checks that fired, each moved feature's PSI and KS, and the check's own words and time.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx
import pandas as pd
import sqlalchemy as sa

from datasource.generator import generate_listings
from tasador.core import db, live_drift_store
from tasador.core.columns import RAW_COLUMNS, TARGET
from tasador.core.config import Settings, get_settings
from tasador.core.process import prepare_process
from tasador.core.tables.raw import inference_requests

LOG_WAIT_S = 60.0  # the inference log writes every 0.25 s; a spool after an outage takes longer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2_000, help="/predict requests to send")
    parser.add_argument("--rows-per-request", type=int, default=1, help="listings per request")
    parser.add_argument("--states", default="Alaska,Hawaii,Montana", help="states drawn from")
    parser.add_argument("--csv", default=None, help="a realtor CSV to draw the rows from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-check", action="store_true", help="send only; no check run")
    return parser.parse_args()


def listings(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The listings to send, as JSON objects without the price and without blanks."""
    states = [s.strip() for s in args.states.split(",") if s.strip()]
    n = args.requests * args.rows_per_request
    if args.csv:
        frame = pd.read_csv(args.csv, dtype={"zip_code": "string"}, keep_default_na=True)
        frame = frame[frame["state"].isin(states)]
        if frame.empty:
            raise SystemExit(f"no row of {args.csv} is in {states}")
        frame = frame.sample(n, replace=len(frame) < n, random_state=args.seed)
    else:
        frame = generate_listings(n, seed=args.seed, states=states)
    fields = [c for c in RAW_COLUMNS if c != TARGET]
    rows = frame.loc[:, fields].astype(object).where(frame.loc[:, fields].notna(), None)
    return [{k: v for k, v in row.items() if v is not None} for row in rows.to_dict("records")]


def logged_rows(settings: Settings, after: int) -> int:
    """Served listings in RAW's inference log after request id ``after``."""
    with db.engine("raw", settings.databases).connect() as conn:
        return live_drift_store.new_requests(conn, after, limit=0).rows


def last_request_id(settings: Settings) -> int:
    with db.engine("raw", settings.databases).connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(inference_requests.c.id))).scalar() or 0)


def send(settings: Settings, rows: list[dict[str, Any]], per_request: int) -> tuple[int, float]:
    """POST the rows to /predict; the listings answered 200 and the seconds it took."""
    key = settings.serving.serving_api_key
    headers = {"X-API-Key": key.get_secret_value()} if key is not None else {}
    answered, start = 0, time.perf_counter()
    with httpx.Client(base_url=settings.ui.serving_api_url, headers=headers, timeout=30) as client:
        for i in range(0, len(rows), per_request):
            body = rows[i : i + per_request]
            response = client.post("/predict", json=body[0] if per_request == 1 else body)
            if response.status_code == 200:
                answered += len(body)
            else:
                print(f"  /predict answered {response.status_code}: {response.text[:200]}")
    return answered, time.perf_counter() - start


def main() -> None:
    prepare_process()
    args = parse_args()
    settings = get_settings()
    rows = listings(args)
    before = last_request_id(settings)
    answered, seconds = send(settings, rows, args.rows_per_request)
    print(f"sent {len(rows):,} listings from {args.states}: {answered:,} priced in {seconds:.1f} s")
    deadline = time.monotonic() + LOG_WAIT_S
    while (logged := logged_rows(settings, before)) < answered and time.monotonic() < deadline:
        time.sleep(0.5)
    print(f"RAW inference log: {logged:,} of them written")
    if args.no_check:
        return
    from tasador.loop.monitor import check_live_drift  # MLflow and scipy: only when checking

    start = time.perf_counter()
    outcome = check_live_drift(settings)
    took = time.perf_counter() - start
    check = outcome.check
    if check is not None:
        print(
            f"live drift check {check.check_id}: {check.rows:,} requests read, "
            f"alarm {check.alarm}, share fired {check.drift_share}, {took:.1f} s"
        )
        for f in check.features:
            ks = f", KS D {f.ks_statistic:.3f}" if f.ks_statistic is not None else ""
            psi = f"PSI {f.psi:.3f}" if f.psi is not None else "no values"
            print(f"  {f.column:15} {psi}{ks}{'  MOVED' if f.moved else ''}")
        for u in check.unseen:
            print(
                f"  unseen {u.column:8} {100 * u.share:.1f}% (chance {100 * u.expected_share:.1f}%)"
                f"{'  FIRED' if u.fired else ''}"
            )
    print(outcome.summary)


if __name__ == "__main__":
    main()
