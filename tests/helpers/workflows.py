"""The GitHub Actions workflows as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.helpers.dockerfile import REPO

WORKFLOWS_DIR = REPO / ".github" / "workflows"


def workflow(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS_DIR / name).read_text())
    # YAML 1.1 reads the bare key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS_DIR.glob("*.yml"))


def matrix_images() -> list[str]:
    return workflow("images.yml")["jobs"]["build"]["strategy"]["matrix"]["image"]


def steps(workflow_name: str, job: str) -> list[dict[str, Any]]:
    return workflow(workflow_name)["jobs"][job]["steps"]


def step_using(workflow_name: str, job: str, action: str) -> dict[str, Any]:
    """The step of a job that uses an action (``owner/name``, any version)."""
    for step in steps(workflow_name, job):
        if step.get("uses", "").split("@")[0] == action:
            return step
    raise LookupError(f"{workflow_name}:{job} has no step using {action}")
