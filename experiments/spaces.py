"""Search spaces as data: ``search_spaces/<family>.yaml``, validated when loaded.

A file names its family (one of experiments.families), the distributions of the estimator's
hyperparameters, optional fixed values, and optionally a distribution of the feature
encoding's smoothing. Example::

    family: lightgbm
    params:
      learning_rate: {type: float, low: 0.01, high: 0.3, log: true}
      num_leaves: {type: int, low: 8, high: 256, log: true}
    fixed:
      subsample_freq: 1
    features:
      smoothing: {type: float, low: 1, high: 50, log: true}

Every error names the file and the key (``search_spaces/xgboost.yaml: params.max_depth.low:
...``). The family is itself a categorical of the study (``family``), and each family's
parameters are named ``<family>.<param>`` in Optuna so the spaces stay disjoint; MLflow gets the
plain names next to the ``family`` param.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import optuna
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from experiments.families import FAMILIES, estimator_parameters, family
from tasador.core.errors import BadInput

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "search_spaces"
FAMILY_PARAM = "family"


class SearchSpaceError(BadInput):
    """A search space that cannot be used; the message names the file (or study) and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntParam(_Strict):
    """An integer hyperparameter range, optionally stepped or log-scaled."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(default=1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("log scale needs step 1")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)


class FloatParam(_Strict):
    """A float hyperparameter range, optionally stepped or log-scaled (not both)."""

    type: Literal["float"]
    low: float
    high: float
    step: float | None = Field(default=None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("log scale cannot have a step")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class CategoricalParam(_Strict):
    """A hyperparameter picked from a list of choices."""

    type: Literal["categorical"]
    choices: list[str | int | float | bool | None] = Field(min_length=1)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, self.choices)


def _check_range(low: float, high: float, log: bool) -> None:
    if low >= high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0, got {low}")


Param = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


class FeatureSpace(_Strict):
    """Feature-encoding settings to search or fix: the target-encoding smoothing."""

    smoothing: FloatParam | Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _positive(self) -> FeatureSpace:
        if isinstance(self.smoothing, FloatParam) and self.smoothing.low <= 0:
            raise ValueError("smoothing.low must be > 0")
        return self


class SearchSpace(_Strict):
    """A model family's search space: searched parameters, fixed ones and feature settings."""

    family: str
    params: dict[str, Param] = Field(min_length=1)
    fixed: dict[str, Any] = Field(default_factory=dict)
    features: FeatureSpace = FeatureSpace()

    def suggest(self, trial: optuna.Trial) -> tuple[dict[str, Any], float | None]:
        """Sample this family's hyperparameters (and smoothing) for ``trial``."""
        params = {
            name: dist.suggest(trial, self.optuna_name(name)) for name, dist in self.params.items()
        }
        smoothing = self.features.smoothing
        if isinstance(smoothing, FloatParam):
            smoothing = smoothing.suggest(trial, self.optuna_name("smoothing"))
        return {**self.fixed, **params}, smoothing

    def from_trial(self, trial_params: Mapping[str, Any]) -> tuple[dict[str, Any], float | None]:
        """Rebuild (estimator params, smoothing) from a finished trial's Optuna params."""
        prefix = f"{self.family}."
        own = {k[len(prefix) :]: v for k, v in trial_params.items() if k.startswith(prefix)}
        smoothing = own.pop("smoothing", self.features.smoothing)
        missing = set(self.params) - set(own)
        if missing:
            raise SearchSpaceError(f"trial lacks {self.family} params {sorted(missing)}")
        return {**self.fixed, **own}, smoothing

    def admits(self, trial_params: Mapping[str, Any]) -> bool:
        """Whether a trial's Optuna params (e.g. an earlier champion's) lie inside this space."""
        try:
            params, smoothing = self.from_trial(trial_params)
        except SearchSpaceError:
            return False
        dists = {**self.params, "smoothing": self.features.smoothing}
        values = {**params, "smoothing": smoothing}
        return all(
            _inside(cast("IntParam | FloatParam | CategoricalParam", dists[k]), values[k])
            for k in dists
            if not _fixed(dists[k])  # so dists[k] is one of the searched distributions
        )

    def optuna_name(self, name: str) -> str:
        return f"{self.family}.{name}"


def _fixed(dist: object) -> bool:
    return not isinstance(dist, IntParam | FloatParam | CategoricalParam)


def _inside(dist: IntParam | FloatParam | CategoricalParam, value: Any) -> bool:
    if isinstance(dist, CategoricalParam):
        return value in dist.choices
    return isinstance(value, int | float) and dist.low <= value <= dist.high


def _describe(exc: ValidationError, where: str) -> SearchSpaceError:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"] if not _is_union_tag(part))
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {key or '(top level)'}: {message}")
    return SearchSpaceError("\n".join(lines))


def _is_union_tag(part: object) -> bool:
    # pydantic puts the discriminator value or member type into error locations.
    return part in {"int", "float", "categorical"} or str(part).startswith("function-")


def parse_space(data: object, where: str) -> SearchSpace:
    """Validate one space (``where`` names its origin in errors)."""
    try:
        space = SearchSpace.model_validate(data)
    except ValidationError as exc:
        raise _describe(exc, where) from None
    if space.family not in FAMILIES:
        raise SearchSpaceError(
            f"{where}: family: unknown family {space.family!r}; known: {', '.join(FAMILIES)}"
        )
    estimator = family(space.family).estimator.__name__
    accepted = estimator_parameters(space.family)
    platform = set(family(space.family).runtime(1, 0))
    for section, names in (("params", space.params), ("fixed", space.fixed)):
        for name in names:
            if name not in accepted:
                raise SearchSpaceError(f"{where}: {section}.{name}: not a parameter of {estimator}")
            if name in platform:
                raise SearchSpaceError(f"{where}: {section}.{name}: set by the platform")
    both = set(space.params) & set(space.fixed)
    if both:
        raise SearchSpaceError(f"{where}: fixed: also searched in params: {sorted(both)}")
    return space


def load_space(path: Path) -> SearchSpace:
    """Read and validate one search-space file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SearchSpaceError(f"{path}: cannot read YAML: {exc}") from None
    space = parse_space(data, str(path))
    if path.stem != space.family:
        raise SearchSpaceError(f"{path}: family: {space.family!r} must match the file name")
    return space


def load_spaces(
    directory: Path | None = None, families: Iterable[str] | None = None
) -> dict[str, SearchSpace]:
    """Every ``*.yaml`` of ``directory`` (or only the named families), validated."""
    directory = directory or DEFAULT_DIR
    spaces = {path.stem: load_space(path) for path in sorted(directory.glob("*.yaml"))}
    if families is not None:
        wanted = list(families)
        unknown = [f for f in wanted if f not in spaces]
        if unknown:
            raise SearchSpaceError(f"{directory}: no search space for {', '.join(unknown)}")
        spaces = {f: spaces[f] for f in wanted}
    if not spaces:
        raise SearchSpaceError(f"{directory}: no search-space files (*.yaml)")
    return spaces


def spaces_to_json(spaces: Mapping[str, SearchSpace]) -> dict[str, Any]:
    """The search spaces as JSON-ready dicts, by name."""
    return {name: space.model_dump(mode="json") for name, space in spaces.items()}


def spaces_from_json(data: Mapping[str, Any], where: str) -> dict[str, SearchSpace]:
    """Search spaces parsed back from JSON; errors name ``where`` and the space."""
    return {name: parse_space(value, f"{where}: {name}") for name, value in data.items()}


def suggest(
    trial: optuna.Trial, spaces: Mapping[str, SearchSpace]
) -> tuple[str, dict[str, Any], float | None]:
    """Sample a family, then its parameters: one study compares every family."""
    name = trial.suggest_categorical(FAMILY_PARAM, sorted(spaces))
    params, smoothing = spaces[name].suggest(trial)
    return name, params, smoothing
