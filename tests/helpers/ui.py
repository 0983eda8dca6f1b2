"""The UI's world (batches decided, two versions promoted with their SHAP comparison, the API
serving the latest) and logging a SHAP comparison as the champion step does."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments import explain, registry
from experiments.report import SHAP_DIR
from tasador.core.config import Settings


@dataclass(frozen=True)
class World:
    settings: Settings
    api_url: str
    versions: tuple[str, str]
    batch_ids: list[int]


def log_shap(settings: Settings, version: str, new: Any, previous: Any, rows: pd.DataFrame) -> None:
    """The SHAP comparison as experiments.champion logs it on the version's run."""
    client = registry.connect(settings)
    run_id = client.get_model_version(settings.mlflow.model_name, version).run_id
    previous_version = None if previous is None else int(version) - 1
    before = None if previous is None else explain.Explained(previous, None)  # trees: no need
    change = explain.explain_change(
        explain.Explained(new, None), before, rows, previous_version, f"v{version}"
    )
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / SHAP_DIR
        out.mkdir()
        change.diff.to_csv(out / "importance.csv", index=False)
        (out / "importance.png").write_bytes(change.png)
        (out / "summary.txt").write_text(change.sentence + "\n")
        client.log_artifacts(run_id, str(out), SHAP_DIR)
