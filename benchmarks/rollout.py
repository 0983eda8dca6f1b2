"""Swap time of serving's hot swap: the previous version kept in memory vs a cold load.

    uv run python benchmarks/rollout.py [--families xgboost,lightgbm] [--rounds 10]

Sets up a private embedded MLflow server (benchmarks/measure.py), trains one model per family of
``--families`` (two: the current and the previous production) on the cleaned 5k-row realtor
sample with mid-range parameters (benchmarks/serve.py), registers each with a 256-row validation
sample and points ``production`` at it. A serving watcher (serving.hot_swap.ModelWatcher, as in
`tasador serve`) polls after each move:

- cold: the first time the alias names a version, the watcher downloads it from MLflow,
  prepares its scorer (scoring artifact read and checked) and validates it (serving.validation);
- from memory: the alias is moved back and forth ``--rounds`` times (a rollback, then the move
  forward again); the version served before the current one is kept loaded, so the swap needs
  no download.

"swap" is the watcher's own timing (``status.last_swap``: from the registry's answer to the new
model replacing the served one); "poll + swap" adds the registry poll that noticed the move.
No assertions: it prints figures, with the load average beside them.
"""

from __future__ import annotations

import argparse
import statistics
import time

from measure import load_note, private_mlflow, table
from serve import listings, register_model

from tasador.core.process import prepare_process

MODEL_NAME = "bench-rollout"


def main() -> None:
    parser = argparse.ArgumentParser(description="Swap time: previous model in memory vs cold.")
    parser.add_argument("--families", default="xgboost,lightgbm")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    first_family, second_family = args.families.split(",")
    print(f"before: {load_note()}", flush=True)

    from experiments import registry
    from serving.hot_swap import ModelWatcher

    with private_mlflow("tasador-bench-rollout-", model_name=MODEL_NAME) as settings:
        frame, _ = listings(batch_rows=10, n_rows=10)
        client = registry.connect(settings)
        watcher = ModelWatcher(settings)
        rows: list[list[str]] = [["swap", "version", "swap ms", "poll + swap ms"]]
        cold: list[float] = []
        warm: list[float] = []

        def poll(kind: str, into: list[float]) -> None:
            started = time.perf_counter()
            watcher.check()
            total = time.perf_counter() - started
            swap = watcher.status.last_swap
            assert swap is not None and watcher.status.error is None, watcher.status
            assert swap.from_memory == (kind == "from memory")
            into.append(swap.seconds * 1000)
            rows.append([kind, swap.version, f"{swap.seconds * 1000:.2f}", f"{total * 1000:.1f}"])

        versions = []
        for family in (first_family, second_family):
            print(f"training and registering {family} ...", flush=True)
            versions.append(register_model(settings, frame, family, validation_rows=256)[0])
            poll("cold", cold)
        for _ in range(args.rounds):
            for version in versions:  # back to the previous one, then forward again
                registry.set_production(client, settings.mlflow, version)
                poll("from memory", warm)
        current = watcher.current
        assert current is not None
        print()
        print(table(rows))
        print()
        print(
            f"cold load ({first_family}, {second_family}; download + prepare + validate): "
            f"{', '.join(f'{c:,.0f}' for c in cold)} ms"
        )
        print(
            f"from memory ({len(warm)} swaps): median {statistics.median(warm):.3f} ms, "
            f"max {max(warm):.3f} ms (goal: under 50 ms)"
        )
        print(f"validation of the last cold load: {current.info.validation}")
    print(f"after: {load_note()}")


if __name__ == "__main__":
    prepare_process()  # a benchmark is an entry point, like the `tasador` command
    main()
