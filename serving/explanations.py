"""SHAP for one listing, from the very model object that priced it (experiments.explain)."""

from __future__ import annotations

import math

from experiments.explain import BASE_VALUE, explain_rows
from experiments.features import model_input
from serving.models import ServedModel
from serving.schema import Contribution, Explanation, Listing


def explain_listing(served: ServedModel, listing: Listing) -> Explanation:
    """Contributions per input field, largest first; base x factors = the served price."""
    fields = listing.model_dump(exclude={"price"})
    row = explain_rows(served.raw_model, model_input([fields])).iloc[0]
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
    return Explanation(
        prediction=round(float(served.scorer.predict([listing])[0]), 2),
        base_value=base,
        base_price=math.exp(base),
        contributions=contributions,
        model=served.info.ref(),
    )


def _shown(value: object) -> str | float | None:
    if value is None or isinstance(value, int | float):
        return value
    return str(value)
