"""Each service in an environment with only the core and its dependency group, as its image
installs it (docker/group_sizes.py builds it from uv.lock): its entry point imports there, loads
nothing it should not need, and the environment stays within its size budget."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.docker_scripts import GROUP_SIZES
from tests.helpers.dockerfile import REPO

pytestmark = pytest.mark.slow

# The modules each image's command imports: the CLI, then what its command runs.
CLI = ["tasador.cli"]
ENTRY = {
    "datasource": [*CLI, "datasource.api"],
    "serving": [*CLI, "serving.api"],
}
# What each service must neither install nor import (the UI and the data API never fit or
# explain a model; serving never searches, schedules or draws).
NOT_NEEDED = {
    "datasource": {"sklearn", "scipy", "matplotlib", "xgboost", "shap", "optuna", "streamlit"},
    "serving": {"airflow", "celery", "streamlit", "optuna", "matplotlib", "flaml", "catboost"},
    "ui": {"sklearn", "scipy", "matplotlib", "xgboost", "lightgbm", "shap", "optuna", "airflow"},
}
PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""
FIND = """
import importlib.util, json, sys
print(json.dumps([name for name in sys.argv[1:] if importlib.util.find_spec(name)]))
"""


def ui_modules() -> list[str]:
    """The app's modules and what its pages import (a page is a script Streamlit runs, so it is
    not imported here: what it imports is)."""
    app = REPO / "app"
    modules = [f"app.{p.stem}" for p in sorted(app.glob("*.py")) if p.stem not in {"main"}]
    for page in sorted((app / "views").glob("*.py")):
        for node in ast.walk(ast.parse(page.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.append(node.module)
            elif isinstance(node, ast.Import):
                modules += [alias.name for alias in node.names]
    return [*CLI, *dict.fromkeys(modules)]


def _run(python: Path, script: str, args: list[str], home: Path) -> list[str]:
    done = subprocess.run(
        [str(python), "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=home,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("group", "entry"), [*ENTRY.items(), ("ui", None)])
def test_a_service_runs_with_only_its_group_within_its_budget(
    group: str, entry: list[str] | None, tmp_path: Path
) -> None:
    python = GROUP_SIZES.build(group, tmp_path / "env")
    # Measured before anything runs there (imports add bytecode the image does not ship).
    size_mb = GROUP_SIZES.size_mb(tmp_path / "env")
    budget = GROUP_SIZES.BUDGET_MB[group]
    assert size_mb <= budget, f"{group}: {size_mb:,.0f} MB installed, budget {budget:,} MB"
    modules = entry or ui_modules()
    # An import its group lacks fails here, as in the container (ModuleNotFoundError).
    loaded = set(_run(python, PROBE, modules, tmp_path))
    assert not loaded & NOT_NEEDED[group], f"{group} imports {sorted(loaded & NOT_NEEDED[group])}"
    installed = set(_run(python, FIND, sorted(NOT_NEEDED[group]), tmp_path))
    assert not installed, f"the {group} environment installs {sorted(installed)}"
