"""Checking a version before it answers: its prices on the sample stored with it.

When the alias moves, the watcher (serving.hot_swap) loads the new version off the request path
and runs :func:`validate` on the scorer that would serve it. A version passes when, on the
validation sample stored with it at registration (``experiments.registry.VALIDATION_FILE``:
shared-holdout listings and their prices), every price is finite and positive, and the sample's
RMSLE is within ``serving_validation_tolerance`` (relative, either way) of the version's
registered holdout RMSLE (the run metric ``holdout_rmsle``). The sample is a few hundred rows of
that holdout, so its RMSLE is not exactly the holdout's: on the realtor sample, 256 rows drawn
from a 1,500-row holdout are within 21% of the whole holdout's RMSLE 99 times in 100 (ridge and
lightgbm), hence the default tolerance of 35%; a model that prices far off its record (twice
the RMSLE) is well outside it.

Before that, serving.models checks the scorer gives the prices the pipeline gave at
registration (stored in the version's scoring artifact). A version without a sample (registered
before samples were stored, or by other means) is checked on the artifact's probe listings only
(finite, positive) and says so; one without a
registered holdout RMSLE skips the RMSLE comparison and says so too. A version that fails is
*refused*: the watcher keeps serving the version it had and reports the refusal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from serving.schema import LISTING, Listing
from tasador.core.metrics import rmsle
from tasador.core.names import HOLDOUT_PRIMARY

REGISTERED_RMSLE = HOLDOUT_PRIMARY  # the run metric validation compares with


@dataclass(frozen=True)
class Verdict:
    """The outcome of one validation: passed or not, and in words what was checked or why."""

    passed: bool
    code: str  # "passed", "no_sample" (passed on probes only), or why refused (a metric label)
    detail: str


class Refused(Exception):
    """A loaded version that failed validation: it must not serve."""

    def __init__(self, version: str, verdict: Verdict) -> None:
        super().__init__(f"version {version} refused: {verdict.detail}")
        self.version = version
        self.verdict = verdict


def parse_listings(records: Sequence[Any]) -> tuple[list[int], list[Listing]]:
    """The records that parse as the API parses them, as listings, with their positions."""
    kept, listings = [], []
    for i, record in enumerate(records):
        try:
            listings.append(LISTING.validate_json(json.dumps(record)))
        except ValidationError:
            continue
        kept.append(i)
    return kept, listings


def sample_listings(sample: Mapping[str, Sequence[Any]]) -> tuple[list[Listing], np.ndarray]:
    """The sample's listings as serving parses them, with their prices; rows the API would
    refuse (none, for rows CLEAN kept) are left out."""
    kept, listings = parse_listings(sample["listings"])
    prices = np.asarray(sample["prices"], dtype=np.float64)[kept]
    return listings, prices


def _bad_prices(prices: np.ndarray, where: str) -> Verdict | None:
    """The refusal of prices that are not all finite and positive (None: they are)."""
    finite = np.isfinite(prices)
    if not finite.all():
        return Verdict(
            False,
            "non_finite",
            f"{int((~finite).sum())} of {len(prices)} {where} priced NaN or infinite",
        )
    if (prices <= 0).any():
        return Verdict(
            False,
            "non_positive",
            f"{int((prices <= 0).sum())} of {len(prices)} {where} priced zero or less",
        )
    return None


def validate(
    predict: Any,
    sample: Mapping[str, Sequence[Any]] | None,
    registered_rmsle: float | None,
    tolerance: float,
    probes: Sequence[Listing] = (),
) -> Verdict:
    """Check ``predict`` (listings -> prices: the scorer that would serve) on ``sample``.

    Without a sample, on ``probes`` (the artifact's probe listings; finiteness only)."""
    if sample is None:
        bad = _bad_prices(np.asarray(predict(probes), dtype=np.float64), "probe listings")
        if bad is not None:
            return bad
        return Verdict(
            True,
            "no_sample",
            f"no validation sample stored with the version: checked on {len(probes)} probe "
            "listings only (finite and positive prices)",
        )
    listings, truth = sample_listings(sample)
    if not listings:
        return Verdict(False, "empty_sample", "no listing of the validation sample parses")
    prices = np.asarray(predict(listings), dtype=np.float64)
    bad = _bad_prices(prices, "validation listings")
    if bad is not None:
        return bad
    got = rmsle(truth, prices)
    checked = f"{len(listings)} validation listings priced finite and positive, RMSLE {got:.4f}"
    if registered_rmsle is None or not math.isfinite(registered_rmsle) or registered_rmsle <= 0:
        return Verdict(True, "passed", f"{checked} (no registered holdout RMSLE to compare with)")
    gap = (got - registered_rmsle) / registered_rmsle
    within = (
        f"registered holdout RMSLE {registered_rmsle:.4f} ({gap:+.0%}; tolerance {tolerance:.0%})"
    )
    if abs(gap) > tolerance:
        return Verdict(False, "rmsle_off", f"{checked}, far from its {within}")
    return Verdict(True, "passed", f"{checked}, matching its {within}")
