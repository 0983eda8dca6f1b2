"""Time to decide: a 100k-row batch against a 200k-row reference, with a production model.

    uv run python benchmarks/decide.py [--reference 200000] [--batch 100000] [--repeat 3]

Sets up throwaway RAW/CLEAN databases in the embedded PostgreSQL, a throwaway MLflow registry
(SQLite, in a temporary folder) holding a small gradient-boosting model trained on the
reference, then times ``decide_batch`` end to end (reading CLEAN, statistics, scoring the model,
storing the decision) and its parts. The reference batch is generated large enough that its
*training* rows (the non-holdout 80%) number ``--reference``. Target: under 2 s end to end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import psycopg
from psycopg import sql
from pydantic import SecretStr
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

from datasource.generator import generate_listings
from tasador import startup
from tasador.core import clean_store, db, lineage, migrations, names, raw_store
from tasador.core import evidence as ev
from tasador.core.columns import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS
from tasador.core.config import Settings
from tasador.core.holdout import HOLDOUT_SHARE
from tasador.core.process import prepare_process
from tasador.loop import decide, ingest


def store(settings: Settings, number: int, rows: int, **knobs: object) -> int:
    frame = generate_listings(rows, seed=(11, number), **knobs)
    stored = raw_store.store_batch(
        db.engine("raw", settings.databases),
        group_number=1,
        day=None,
        batch_number=number,
        rows=frame.astype(object).where(frame.notna(), None).to_numpy().tolist(),
        payload_sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        source="benchmark",
    )
    ingest.clean(settings.databases, stored.id)
    return stored.id


def register_model(settings: Settings, reference_id: int) -> None:
    """A small gradient-boosting model on the reference's training rows, as production."""
    engine = db.engine("clean", settings.databases)
    rows = clean_store.load_listings(engine, [reference_id], holdout=False)
    rows = rows.sample(n=min(len(rows), 50_000), random_state=0)
    holdout = clean_store.load_listings(engine, [reference_id], holdout=True)
    features = ColumnTransformer(
        [
            ("numbers", "passthrough", list(NUMERIC_COLUMNS)),
            (
                "categories",
                make_pipeline(
                    FunctionTransformer(lambda x: x.astype(object).fillna("?")),
                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                ),
                list(CATEGORICAL_COLUMNS),
            ),
        ]
    )
    model = TransformedTargetRegressor(
        regressor=make_pipeline(features, HistGradientBoostingRegressor(max_iter=100)),
        func=np.log,
        inverse_func=np.exp,
    )
    model.fit(rows.loc[:, list(ev.FEATURE_COLUMNS)], rows["price"])
    price_model = _PriceModel(model)
    holdout_rmsle, _ = ev.model_error(price_model.pipeline, holdout, len(holdout))
    mlflow.set_tracking_uri(settings.mlflow.mlflow_tracking_uri)
    with mlflow.start_run():
        mlflow.log_metric(names.HOLDOUT_PRIMARY, holdout_rmsle)
        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=price_model,
            registered_model_name=settings.mlflow.model_name,
            pip_requirements=["scikit-learn"],
        )
    client = mlflow.MlflowClient()
    version = str(logged.registered_model_version)
    client.set_model_version_tag(
        settings.mlflow.model_name, version, lineage.BATCH_IDS, str(reference_id)
    )
    client.set_registered_model_alias(
        settings.mlflow.model_name, settings.mlflow.production_alias, version
    )


class _PriceModel(mlflow.pyfunc.PythonModel):
    """Raw clean columns in, dollars out, like the project's models."""

    def __init__(self, pipeline: TransformedTargetRegressor) -> None:
        self.pipeline = pipeline

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return self.pipeline.predict(model_input)


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this process over ``repeat`` runs.

    On a shared machine the wall time includes waiting for a core; the CPU time does not."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=int, default=200_000, help="reference training rows")
    parser.add_argument("--batch", type=int, default=100_000, help="rows in the new batch")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    base = Settings()
    already_running = (base.pg_dir / "postmaster.pid").exists()
    names = [f"bench_decide_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("raw", "clean")]
    with tempfile.TemporaryDirectory() as tmp:
        settings = base.updated(
            raw_db_url=SecretStr(startup.database_url(base.pg_dir, names[0])),
            clean_db_url=SecretStr(startup.database_url(base.pg_dir, names[1])),
            mlflow_tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
        )
        try:
            for database in ("raw", "clean"):
                migrations.upgrade(db.database_url(database, settings.databases), database)
            run(settings, args)
        finally:
            drop(base, names)
            if not already_running:  # leave nothing running that this benchmark started
                startup.stop(base.pg_dir)


def run(settings: Settings, args: argparse.Namespace) -> None:
    print("setting up (generate, store, clean, train, register) ...", flush=True)
    reference_id = store(settings, 0, round(args.reference / (1 - HOLDOUT_SHARE)))
    batch_id = store(settings, 1, args.batch)
    register_model(settings, reference_id)
    engine = db.engine("clean", settings.databases)
    thresholds = ev.Thresholds.from_settings(settings.drift)

    production = decide.production_model(settings)
    assert production is not None
    reference = clean_store.load_listings(engine, [reference_id], holdout=False)
    batch = clean_store.load_listings(engine, [batch_id])
    decision = decide.decide_batch(settings, batch_id, force=True)  # warm-up, and the figure
    evidence = ev.Evidence.model_validate(decision.evidence)
    parts = {
        "read reference + batch from CLEAN": lambda: (
            clean_store.load_listings(engine, [reference_id]),
            clean_store.load_listings(engine, [batch_id]),
        ),
        "statistics (PSI, KS, chi-square, unseen)": lambda: ev.compare(
            reference, batch, thresholds
        ),
        "find + load the production model": lambda: decide.production_model(settings),
        f"score the model ({thresholds.model_rows:,} rows)": lambda: ev.model_error(
            production.model, batch, thresholds.model_rows
        ),
        "decide_batch end to end (force=True)": lambda: decide.decide_batch(
            settings, batch_id, force=True
        ),
    }
    ref_rows = evidence.reference.rows if evidence.reference else 0
    print(f"reference: {ref_rows:,} training rows; batch: {evidence.batch.rows_out:,} clean rows")
    print(f"load average (1 min) on {os.cpu_count()} cores: {os.getloadavg()[0]:.1f}")
    print(f"{'step':<44}{'wall s':>8}{'CPU s':>8}")
    for name, fn in parts.items():
        wall, cpu = timed(fn, args.repeat)
        print(f"{name:<44}{wall:>8.2f}{cpu:>8.2f}")
    print(f"verdict: {decision.verdict}\n{decision.reason}")


def drop(settings: Settings, names: list[str]) -> None:
    for name in names:
        url = startup.database_url(settings.pg_dir, name)
        db.engine_for(url).dispose()
    with psycopg.connect(startup.server_url(settings.pg_dir), autocommit=True) as conn:
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    prepare_process()  # a benchmark is an entry point, like the `tasador` command
    main()
