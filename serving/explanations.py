"""SHAP for one listing, from the very scoring artifact that priced it (experiments.explain
``artifact_explainer``: the native booster, a forest's node arrays, a ridge's coefficients).

The explainer of a version is built once, when the version loads (:meth:`Explainers.prepare`, in
a background thread the swap starts), not per request and not by the first ``/explain``:
building one costs more than many explanations, and the first build also imports SHAP. Until it
is built, ``/explain`` answers 503 "being built" without taking an explanation slot
(serving.deps). A linear version is explained against the encoded background stored in its
artifact.

SHAP (and matplotlib, through experiments.explain) is imported by the first build, not by this
module: the API imports this module at start, and /predict never needs SHAP.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from serving import heap
from serving.models import ServedModel
from serving.schema import Contribution, Explanation, Listing
from tasador.core.errors import BadInput

if TYPE_CHECKING:
    from experiments.explain import MatrixExplainer

logger = logging.getLogger(__name__)

KEPT_VERSIONS = 2  # built on demand: the version serving, and the one requests may finish on


@dataclass
class _Build:
    """One version's explainer: being built until ``done`` is set, then the explainer or the
    refusal of a model SHAP cannot explain."""

    served: ServedModel
    at_load: bool  # started by the version's load (else by an /explain, which waits for it)
    done: threading.Event = field(default_factory=threading.Event)
    explainer: MatrixExplainer | None = None
    refusal: str | None = None  # why SHAP cannot explain it (a new BadInput per request)
    failure: Exception | None = None  # an unexpected error: the next /explain builds again


class Explainers:
    """One SHAP explainer per loaded model version, built when the version loads.

    The lock only guards the table of builds, never a build itself: ``/explain``'s check
    (:meth:`building`, on the event loop) must not wait for SHAP.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._builds: dict[tuple[str, str], _Build] = {}
        self.builds = 0  # explainers built so far (tests check they are not per request)

    def prepare(self, served: ServedModel, loaded: Sequence[ServedModel]) -> None:
        """Start building ``served``'s explainer in a background thread, and drop those of
        versions no longer ``loaded``, so swaps do not pile explainers up in memory.

        Claimed here, before the thread starts: from now on ``/explain`` sees it being built."""
        with self._lock:
            self._builds = {
                key: build
                for key, build in self._builds.items()
                if any(build.served is model for model in loaded)
            }
        build, mine = self._claim(served, at_load=True)
        if mine:
            name = f"explainer-{served.info.version}"
            threading.Thread(target=self._run, args=(build,), name=name, daemon=True).start()

    def building(self, served: ServedModel) -> bool:
        """Whether ``served``'s explainer is being built by its load right now."""
        with self._lock:
            build = self._builds.get(_key(served))
        if build is None or build.served is not served:
            return False
        return build.at_load and not build.done.is_set()

    def kept(self) -> list[str]:
        """The versions whose explainer is kept (built or being built)."""
        with self._lock:
            return [version for _, version in self._builds]

    def of(self, served: ServedModel) -> MatrixExplainer:
        """The explainer of ``served``; raises BadInput for a model SHAP cannot explain.

        Built here (in the caller's thread) when no load prepared it, e.g. a model set in
        place; waits for a build already under way."""
        build, mine = self._claim(served, at_load=False)
        if mine:
            self._run(build)
        build.done.wait()
        if build.refusal is not None:
            raise BadInput(build.refusal)
        if build.failure is not None:
            raise build.failure
        assert build.explainer is not None  # done, neither refused nor failed
        return build.explainer

    def _claim(self, served: ServedModel, at_load: bool) -> tuple[_Build, bool]:
        """``served``'s build, and whether the caller is the one to run it (a new one).

        Built on demand, only the newest KEPT_VERSIONS are kept; at load, those of the loaded
        versions (:meth:`prepare` dropped the others)."""
        key = _key(served)
        with self._lock:
            found = self._builds.get(key)
            if found is not None and found.served is served:
                return found, False
            build = _Build(served, at_load)
            kept = list(self._builds.items())
            if not at_load:
                kept = kept[-(KEPT_VERSIONS - 1) :]
            self._builds = {**dict(kept), key: build}
            return build, True

    def _run(self, build: _Build) -> None:
        served = build.served
        try:
            build.explainer = _build_explainer(served)
        except BadInput as exc:
            build.refusal = str(exc)
        except Exception as exc:  # logged, and forgotten: the next /explain builds it again
            logger.exception("building the explainer of version %s", served.info.version)
            build.failure = exc
            with self._lock:
                if self._builds.get(_key(served)) is build:
                    del self._builds[_key(served)]
        finally:
            build.done.set()  # first: /explain answers with it while the heap settles
        if build.explainer is not None:
            with self._lock:  # builds of two versions may end together
                self.builds += 1
            heap.settle(f"the explainer of version {served.info.version} built")  # SHAP's too


def _key(served: ServedModel) -> tuple[str, str]:
    return served.info.name, served.info.version


def _build_explainer(served: ServedModel) -> MatrixExplainer:
    """The explainer of ``served`` (the first call imports SHAP); BadInput when SHAP cannot."""
    from experiments.explain import NoBackground, artifact_explainer

    scoring = getattr(served.scorer, "artifact", None)
    if scoring is None:
        raise BadInput(f"version {served.info.version} cannot be explained: no scoring artifact")
    try:
        return artifact_explainer(scoring)
    except NoBackground as exc:
        raise BadInput(f"version {served.info.version} cannot be explained: {exc}") from None


def explain_listing(
    served: ServedModel,
    listing: Listing,
    explainers: Explainers | None = None,
    price: float | None = None,
) -> Explanation:
    """Contributions per input field, largest first; base x factors = the served price.

    ``price``: the served price when the caller has it already (else it is computed).
    """
    from experiments.explain import BASE_VALUE  # imported by the explainer's build already

    fields = listing.model_dump(exclude={"price"})
    explain = (explainers or Explainers()).of(served)
    row = explain(served.scorer.features([listing])).iloc[0]
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
