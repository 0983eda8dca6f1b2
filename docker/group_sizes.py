#!/usr/bin/env python3
"""Print the installed size of each image's environment (its dependency group on the core).

Each environment is built as its image builds it (`uv sync --no-default-groups --group NAME`) in
a throwaway folder, measured, then deleted. Run from the repository: `python3 docker/group_sizes.py`
(needs the uv cache or PyPI). Each image's environment has a budget (``BUDGET_MB``) that
tests/deploy/test_group_environments.py holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The image each environment is for; None is the core alone (the project's dependencies).
GROUPS = {
    None: "(core only)",
    "datasource": "tasador-datasource",
    "serving": "tasador-serving",
    "ui": "tasador-app",
    "training": "(training, inside airflow)",
    "airflow": "tasador-airflow",
    "tracking": "tasador-mlflow",
}
# optuna-dashboard installs named packages (not the project's core), as its target does.
DASHBOARD = ["optuna-dashboard", "optuna", "psycopg2-binary", "gunicorn"]
# Installed MB each environment may reach. Serving's is 75 % of its 835 MB before XGBoost's CPU
# build and the lean core; the others are their measured sizes with a few percent of room.
BUDGET_MB = {
    None: 215,
    "datasource": 215,
    "serving": 626,
    "ui": 490,
    "training": 680,
    "airflow": 830,
    "tracking": 690,
}


def size_mb(folder: Path) -> float:
    total = sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 1e6


def uv(*args: str, **kwargs: object) -> str:
    # `uv run` names its binary in UV (the tests run so); else the uv module of this Python.
    command = [os.environ["UV"]] if "UV" in os.environ else [sys.executable, "-m", "uv"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"uv {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def build(group: str | None, where: Path) -> Path:
    """The environment of the core and ``group`` at ``where`` (as the image's `uv sync`); its
    Python. Files are hard-linked from the uv cache when they can be: the sizes are the same."""
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(where)}
    groups = ["--group", group] if group else []
    uv("sync", "--quiet", "--frozen", "--no-default-groups", *groups, cwd=REPO, env=env)
    return where / "bin" / "python"


def measure(group: str | None, where: Path) -> tuple[float, int]:
    build(group, where)
    return counted(where)


def measure_dashboard(where: Path) -> tuple[float, int]:
    constraints = where.parent / "constraints.txt"
    uv(
        "export",
        "--quiet",
        "--frozen",
        "--no-dev",
        "--no-emit-project",
        "--no-hashes",
        "--output-file",
        str(constraints),
        cwd=REPO,
    )
    uv("venv", "--quiet", str(where))
    uv(
        "pip",
        "install",
        "--quiet",
        "--python",
        str(where / "bin" / "python"),
        "--constraint",
        str(constraints),
        *DASHBOARD,
    )
    return counted(where)


def counted(where: Path) -> tuple[float, int]:
    freeze = uv("pip", "list", "--python", str(where / "bin" / "python"))
    packages = len(freeze.splitlines()) - 2  # header lines
    return size_mb(where), packages


def main() -> None:
    print(f"load average: {os.getloadavg()}")
    print("| group | image | packages | installed size | budget |")
    print("| --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="tasador-groups-") as tmp:
        for group, image in GROUPS.items():
            mb, packages = measure(group, Path(tmp) / (group or "core"))
            row = f"| {group or 'core'} | {image} | {packages} | {mb:,.0f} MB"
            print(f"{row} | {BUDGET_MB[group]:,} MB |", flush=True)
        mb, packages = measure_dashboard(Path(tmp) / "dashboard")
        print(f"| (named packages) | tasador-optuna-dashboard | {packages} | {mb:,.0f} MB | - |")


if __name__ == "__main__":
    main()
