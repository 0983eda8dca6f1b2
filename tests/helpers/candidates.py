"""Candidate versions registered directly (no search) and run through the champion step."""

from __future__ import annotations

from typing import Any

from experiments import champion, data, promotions, registry, runs
from experiments.families import build_model
from tasador.core import db, lineage
from tasador.core.columns import TARGET
from tasador.core.config import Settings
from tests.helpers.broken_models import NaNRegressor
from tests.helpers.search import load_batches

# A clearly better booster than the weak ridge the rollout tests promote first.
LIGHTGBM = {"n_estimators": 150, "learning_rate": 0.1, "num_leaves": 16}


class Candidates:
    """Batches in CLEAN and a helper registering fitted models as versions of the test model."""

    def __init__(self, settings: Settings, raw_sample: Any, sizes: list[int]) -> None:
        self.settings = settings
        self.ids = load_batches(settings, raw_sample.iloc[: sum(sizes)], sizes)
        self.client = registry.connect(settings)
        self.engine = db.engine("clean", settings.databases)
        self.train = data.training_rows(settings, self.ids[:1])
        self.holdout = data.holdout_rows(settings, self.ids[:1])
        self.experiment = runs.experiment_id(self.client, settings.mlflow.experiment_name)

    def register(
        self, family: str, params: dict[str, Any] | None = None, model: Any = None
    ) -> tuple[int, Any]:
        """Fit (``model`` when given, else a NaN model when ``family`` is "broken", else the
        family's) and register; (version, loaded)."""
        X, y = self.train.drop(columns=[TARGET]), data.target(self.train)
        if model is None:
            model = NaNRegressor() if family == "broken" else build_model(family, params or {})
        model.fit(X, y)
        run_id = runs.create_run(self.client, self.experiment, f"candidate-{family}", {})
        tags = {
            registry.FAMILY_TAG: family,
            lineage.BATCH_IDS: lineage.encode_batch_ids(self.ids[:1]),
        }
        version = registry.log_and_register(model, X.head(5), self.settings.mlflow, run_id, tags)
        runs.end(self.client, run_id)
        return int(version.version), registry.load_version(self.settings.mlflow, version.version)

    def challenge(self, version: int, model: Any, family: str = "ridge") -> champion.Challenge:
        """The champion/challenger step of ``finish_study`` for an already registered version."""
        return champion.challenge(
            self.settings,
            registry.connect(self.settings),
            self.engine,
            version=version,
            family=family,
            model=model,
            holdout=self.holdout,
            study_name=f"test-v{version}",
            retrain_decision_id=None,
        )

    def production(self) -> int | None:
        found = registry.production_version(self.client, self.settings)
        return None if found is None else int(found.version)

    def audit(self) -> list[promotions.Promotion]:
        return promotions.history(self.engine, self.settings.mlflow.model_name)
