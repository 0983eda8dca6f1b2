"""Rolling the production alias back: one call under the promotion lock, with an audit row.

``tasador rollback``, the ``tasador_rollback`` DAG and the Models page all call
:func:`rollback`. The alias move and its ``alias_moves`` row commit together
(:func:`experiments.promotions.roll_back`); serving follows the alias within one poll interval.
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException

from experiments import promotions, registry
from tasador.core import db
from tasador.core.config import Settings
from tasador.core.errors import Conflict


def rollback(
    settings: Settings, reason: str, to_version: int | None = None, repeat_ok: bool = False
) -> promotions.AliasMove:
    """Point ``@production`` back at ``to_version`` (default: the version before the current
    one) and record why; ``repeat_ok``: a version already restored is a success."""
    client = registry.connect(settings)

    def current() -> int | None:
        found = registry.production_version(client, settings)
        return int(found.version) if found is not None else None

    def exists(version: int) -> bool:
        try:
            client.get_model_version(settings.mlflow.model_name, str(version))
        except MlflowException:
            return False
        return True

    return promotions.roll_back(
        db.engine("clean", settings.databases),
        model_name=settings.mlflow.model_name,
        alias=settings.mlflow.production_alias,
        to_version=to_version,
        reason=reason,
        current=current,
        exists=exists,
        move_alias=lambda version: registry.set_production(client, settings.mlflow, version),
        repeat_ok=repeat_ok,
    )


def rollback_target(settings: Settings) -> int:
    """The version a rollback without ``--to`` restores: production's predecessor."""
    client = registry.connect(settings)
    serving = registry.production_version(client, settings)
    if serving is None:
        raise Conflict(
            f"{settings.mlflow.model_name}@{settings.mlflow.production_alias} points at no version"
        )
    engine = db.engine("clean", settings.databases)
    target = promotions.previous_production(
        engine, settings.mlflow.model_name, settings.mlflow.production_alias, int(serving.version)
    )
    if target is None:
        raise Conflict(f"version {serving.version} has no predecessor on record")
    return target
