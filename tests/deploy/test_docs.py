"""docs/deployment.md: the diagram, the URLs and the commands match the stack."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import compose
from tests.helpers.dockerfile import DOCKER_DIR, REPO

DOC = (REPO / "docs" / "deployment.md").read_text()
ENV = compose.env_file()
SERVICES = compose.load()["services"]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)


def test_the_diagram_shows_every_service() -> None:
    (diagram,) = _blocks("mermaid")
    assert diagram.startswith("flowchart")
    missing = [name for name in SERVICES if not re.search(rf"\b{re.escape(name)}\b", diagram)]
    assert not missing, f"add to the Mermaid diagram: {missing}"


def test_the_urls_use_the_published_ports() -> None:
    for variable in ("AIRFLOW_PORT", "MLFLOW_PORT", "OPTUNA_DASHBOARD_PORT", "GRAFANA_PORT"):
        assert f"http://HOST:{ENV[variable]}`" in DOC, variable
    assert f"http://HOST:{ENV['SERVING_PORT']}/docs" in DOC
    assert f"http://HOST:{ENV['UI_PORT']}`" in DOC
    assert f"http://HOST:{ENV['PROMETHEUS_PORT']}`" in DOC


def test_scaling_and_the_course_api_are_explained() -> None:
    assert "--scale airflow-worker=" in DOC
    assert "TASADOR_DATA_API_URL=http://" in DOC


def test_the_secret_generation_commands_satisfy_the_guard(tmp_path: Path) -> None:
    (snippet,) = [block for block in _blocks("bash") if "openssl rand" in block]
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    subprocess.run(["bash", "-euo", "pipefail", "-c", snippet], cwd=tmp_path, check=True)
    dotenv = compose.env_file(tmp_path / ".env")
    model, _ = compose.resolved(dotenv)
    guard = compose.service_env(model["services"]["secrets-check"], dotenv)
    checked = subprocess.run(
        [sys.executable, str(DOCKER_DIR / "common" / "check_secrets.py")],
        env=guard,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
