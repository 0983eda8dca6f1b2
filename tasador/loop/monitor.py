"""Live drift: the requests served since the last check against the production model's
training rows (``tasador monitor`` and the monitoring DAG).

The statistics and limits are those of retrain decisions (``tasador.loop.decide``,
``tasador.core.evidence.compare_features``): PSI with chi-square and KS per feature, unseen
categories beyond chance. Live requests carry no price, so there is no target shift and no
model-error check. The reference is the training rows (``is_holdout`` false) of the batches the
production version names. A window with fewer than ``live_min_rows`` served listings is stored
as "not enough requests to compare" without an alarm, and its requests are read again next time.

Each check reads the requests after the watermark (``tasador.core.live_drift_store``) under an
advisory lock held until its result is stored, so runs at once take turns and never count a
request twice; a run with no new request stores nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.inputs import model_input
from tasador.core import clean_store, db, live_drift_store
from tasador.core.config import Settings
from tasador.core.errors import Conflict
from tasador.core.evidence import LiveDrift, Thresholds, compare_features
from tasador.core.narrative import live_summary
from tasador.core.timings import step
from tasador.loop.decide import production_lineage


@dataclass(frozen=True)
class Outcome:
    """What a run did: the check it stored (or found stored), or why there was none."""

    summary: str
    check: LiveDrift | None = None  # None: nothing to compare (no model, no new request)
    stored: bool = False  # False with a check: its window was stored by an earlier run


def check_live_drift(settings: Settings) -> Outcome:
    """Compare the requests served since the last compared check; store and return the result."""
    lineage = production_lineage(settings)
    if lineage is None:
        return Outcome("no production model yet: nothing to compare the requests with")
    raw = db.engine("raw", settings.databases)
    thresholds = Thresholds.from_settings(settings.drift)
    with step("monitor"), raw.begin() as conn:
        live_drift_store.lock(conn)
        after = live_drift_store.watermark(conn)
        served = live_drift_store.new_requests(conn, after, thresholds.sample_rows)
        if served.rows == 0:
            return Outcome(f"no request served since request {after}: nothing new to compare")
        result = LiveDrift(
            model_version=lineage.version,
            reference_batch_ids=lineage.batch_ids,
            reference_rows=0,
            after_request_id=served.after,
            through_request_id=served.through,
            rows=served.rows,
            min_rows=settings.drift.live_min_rows,
            thresholds=thresholds,
        )
        if result.compared:
            training = clean_store.load_listings(
                db.engine("clean", settings.databases), lineage.batch_ids, holdout=False
            )
            if training.empty:
                raise Conflict(f"the reference batches {lineage.batch_ids} have no training rows")
            features, unseen = compare_features(training, model_input(served.inputs), thresholds)
            result = result.model_copy(
                update={"reference_rows": len(training), "features": features, "unseen": unseen}
            )
        summary = live_summary(result)
        stored = live_drift_store.save(conn, result, summary)
    if stored is None:
        return Outcome(f"already checked by an earlier run: {summary}", result)
    return Outcome(summary, stored, stored=True)
