"""SHAP for one listing, from the very model object that priced it (experiments.explain).

The explainer of a version is built once, by the first ``/explain`` it serves (:class:`Explainers`),
not per request: building a TreeExplainer costs more than one explanation. A linear version is
explained against the background sample stored with it in the registry, read then (once).
"""

from __future__ import annotations

import math
import threading

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from experiments import registry
from experiments.explain import (
    BASE_VALUE,
    NoBackground,
    RowExplainer,
    needs_background,
    row_explainer,
)
from experiments.features import model_input
from serving.models import ServedModel
from serving.schema import Contribution, Explanation, Listing
from tasador.core.errors import BadInput

KEPT_VERSIONS = 2  # the version serving, and the one requests in flight may still finish on


class Explainers:
    """One SHAP explainer per loaded model version, built on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # two first requests must not both build it
        self._built: dict[tuple[str, str], tuple[ServedModel, RowExplainer]] = {}
        self.builds = 0  # explainers built so far (tests check they are not per request)

    def of(self, served: ServedModel) -> RowExplainer:
        """The explainer of ``served``; raises BadInput for a model SHAP cannot explain."""
        key = (served.info.name, served.info.version)
        with self._lock:
            found = self._built.get(key)
            if found is not None and found[0] is served:
                return found[1]
            try:
                background = _background(served) if needs_background(served.raw_model) else None
                explain = row_explainer(served.raw_model, background)
            except (TypeError, NoBackground) as exc:  # not one of our pipelines, or no sample
                raise BadInput(
                    f"version {served.info.version} cannot be explained: {exc}"
                ) from None
            self.builds += 1
            kept = list(self._built.items())[-(KEPT_VERSIONS - 1) :]
            self._built = {**dict(kept), key: (served, explain)}
            return explain


def _background(served: ServedModel) -> pd.DataFrame | None:
    """The version's SHAP background from the registry (the process's tracking URI, which the
    model watcher set); None when the registry has none for it."""
    client = MlflowClient()
    try:
        version = client.get_model_version(served.info.name, served.info.version)
        return registry.load_background(client, version)
    except MlflowException:
        return None


def explain_listing(
    served: ServedModel,
    listing: Listing,
    explainers: Explainers | None = None,
    price: float | None = None,
) -> Explanation:
    """Contributions per input field, largest first; base x factors = the served price.

    ``price``: the served price when the caller has it already (else it is computed).
    """
    fields = listing.model_dump(exclude={"price"})
    explain = (explainers or Explainers()).of(served)
    row = explain(model_input([fields])).iloc[0]
    base = float(row[BASE_VALUE])
    contributions = [
        Contribution(
            feature=feature,
            value=_shown(fields.get(feature)),
            contribution=float(value),
            factor=math.exp(float(value)),
        )
        for feature, value in row.drop(BASE_VALUE).items()
    ]
    contributions.sort(key=lambda c: abs(c.contribution), reverse=True)
    if price is None:
        price = float(served.scorer.predict([listing])[0])
    return Explanation(
        prediction=round(price, 2),
        base_value=base,
        base_price=math.exp(base),
        contributions=contributions,
        model=served.info.ref(),
    )


def _shown(value: object) -> str | float | None:
    if value is None or isinstance(value, int | float):
        return value
    return str(value)
