"""Data page: the batches collected, what cleaning did to each, and each retrain decision."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import drift_charts, ui
from tasador.core import db, decisions_store
from tasador.loop.status import batch_status

settings = ui.settings()
st.title("Data")

with st.spinner("Reading the batches and their decisions..."):
    batches = ui.read_or_stop(
        "The RAW and CLEAN databases cannot be read",
        lambda: batch_status(settings.databases),
        "No batch collected yet: `tasador collect` or the ingestion DAG stores them.",
    )
    try:  # the evidence each decision rests on, for the charts
        evidence = {
            batch_id: d.evidence
            for batch_id, d in decisions_store.latest_by_batch(
                db.engine("clean", settings.databases)
            ).items()
        }
    except Exception as exc:
        ui.failure("The decisions' evidence cannot be read, so no drift charts", exc)
        evidence = {}


def _total(counts: dict[str, int] | None) -> int | None:
    return None if counts is None else sum(counts.values())


st.dataframe(
    pd.DataFrame(
        [
            {
                "batch": b.batch_id,
                "group": b.group,
                "number": b.batch_number,
                "received": b.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                "rows received": b.rows_received,
                "rows clean": b.rows_clean,
                "dropped": _total(b.dropped),
                "fixed": _total(b.fixed),
                "decision": b.decision.verdict if b.decision else None,
            }
            for b in batches
        ]
    ),
    hide_index=True,
    width="stretch",
)
errors = drift_charts.model_error_table(
    [(b.batch_id, evidence[b.batch_id]) for b in batches if b.batch_id in evidence]
)
if not errors.empty:
    st.subheader("Production model's error on each batch, against its own holdout error")
    st.altair_chart(drift_charts.model_error_chart(errors), width="stretch")

for b in reversed(batches):
    verdict = b.decision.verdict if b.decision else "not decided"
    with st.expander(f"Batch {b.batch_id} (number {b.batch_number}): {verdict}"):
        if b.decision:
            st.write(b.decision.reason)
            drift = drift_charts.drift_table(evidence.get(b.batch_id, {}))
            if not drift.empty:
                st.markdown("**Drift per feature against its limit**")
                st.altair_chart(drift_charts.drift_chart(drift))
            moves = drift_charts.category_moves(evidence.get(b.batch_id, {}))
            if not moves.empty:
                st.markdown("**Largest category share moves (reference vs batch)**")
                st.altair_chart(drift_charts.category_chart(moves))
        left, right = st.columns(2)
        left.markdown("**Rows dropped, by rule**")
        left.json(b.dropped or {})
        right.markdown("**Values fixed, by rule**")
        right.json(b.fixed or {})
