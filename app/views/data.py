"""Data page: the batches collected, what cleaning did to each, and each retrain decision."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import drift_charts, ui
from tasador.core import db, decisions_store, live_drift_store
from tasador.core.narrative import live_summary
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

st.subheader("Live traffic against the production model's training rows")
try:  # RAW's live drift checks (tasador monitor, DAG tasador_monitoring), newest first
    checks = live_drift_store.history(db.engine("raw", settings.databases), limit=20)
except Exception as exc:
    ui.failure("The live drift checks cannot be read", exc)
    checks = []
if not checks:
    st.write("No live drift check yet: `tasador monitor` or the tasador_monitoring DAG runs one.")
else:
    newest = checks[0]
    say = st.warning if newest.alarm else st.info
    say(f"Check {newest.check_id}: {live_summary(newest)}")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "check": c.check_id,
                    "checked": c.checked_at.strftime("%Y-%m-%d %H:%M:%S") if c.checked_at else None,
                    "requests": c.rows,
                    "compared": c.compared,
                    "alarm": c.alarm,
                    "share fired": c.drift_share,
                    "moved": ", ".join(f.column for f in c.moved),
                }
                for c in checks
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    live_drift = drift_charts.drift_table(newest.model_dump(mode="json"))
    if not live_drift.empty:
        st.markdown("**Newest check: drift per feature against its limit**")
        st.altair_chart(drift_charts.drift_chart(live_drift))
