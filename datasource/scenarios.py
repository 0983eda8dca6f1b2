"""Scenarios: YAML files that say which batches the data API serves, validated on load.

A scenario is a list of batches. Each batch has a size at scale 1.0 (``rows``) and the knobs of
the generator (status mix, states, price band, price multiplier, complete rows) plus ``dirty``
knobs. ``defaults`` apply to every batch unless the batch sets the key itself. Shipped scenarios
live in ``datasource/scenarios/<name>.yaml``; any other YAML file can be given by path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from datasource.dirty import DirtyKnobs
from datasource.generator import GeneratorKnobs
from tasador.core.errors import BadInput

SCENARIO_DIR = Path(__file__).with_name("scenarios")


class ScenarioError(BadInput):
    """A scenario that cannot be found or does not validate; the message names file and key."""


class BatchSpec(GeneratorKnobs):
    """One batch of a scenario: name, size at scale 1.0, generator knobs and dirt."""

    name: str = Field(min_length=1)
    rows: int = Field(gt=0, description="rows at scale 1.0")
    dirty: DirtyKnobs = Field(default_factory=DirtyKnobs)

    def generator_knobs(self) -> dict[str, Any]:
        return self.model_dump(include=set(GeneratorKnobs.model_fields), exclude_defaults=True)

    def rows_at(self, scale: float, min_rows: int) -> int:
        return max(min_rows, round(self.rows * scale))


class Scenario(BaseModel):
    """A named list of batches to serve; ``defaults`` apply to every batch on load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    min_rows: int = Field(default=200, ge=1, description="smallest batch at any scale")
    batches: list[BatchSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and "defaults" in data:
            data = dict(data)
            defaults = data.pop("defaults") or {}
            if not isinstance(defaults, dict):
                raise ValueError("defaults must be a mapping of batch keys")
            batches = data.get("batches")
            if isinstance(batches, list):
                data["batches"] = [{**defaults, **b} if isinstance(b, dict) else b for b in batches]
        return data

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def list_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name, or a YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ScenarioError(
                f"unknown scenario {str(name_or_path)!r}; shipped: {', '.join(list_scenarios())}"
                " (or give the path of a YAML file)"
            )
    if not path.exists():
        raise ScenarioError(f"{path}: no such scenario file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping with 'batches'")
    data.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ScenarioError(f"{path}: {problems}") from None
