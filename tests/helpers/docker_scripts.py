"""The stack's start and init scripts under docker/, loaded as modules to test their rules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.helpers.dockerfile import DOCKER_DIR


def load_script(path: Path, name: str) -> ModuleType:
    """The script at ``path`` as a module named ``name`` (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


AIRFLOW_INIT = load_script(DOCKER_DIR / "airflow" / "init.py", "airflow_init")
MLFLOW_START = load_script(DOCKER_DIR / "mlflow" / "start.py", "mlflow_start")
MLFLOW_INIT = load_script(DOCKER_DIR / "mlflow" / "init.py", "mlflow_init")
GROUP_SIZES = load_script(DOCKER_DIR / "group_sizes.py", "group_sizes")
DISTRIBUTED_CHECK = load_script(DOCKER_DIR / "distributed_check.py", "distributed_check")
