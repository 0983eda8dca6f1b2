"""Models page: every version with its metrics, data, reason and promotion; what SHAP says
changed between consecutive production models; links to MLflow and optuna-dashboard."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import history, ui

settings = ui.settings()
st.title("Models")
st.caption(
    f"Registered model **{settings.model_name}**; alias `{settings.production_alias}` serves."
)

versions = ui.read_or_stop(
    "The model history (MLflow registry, promotion records in CLEAN) cannot be read",
    lambda: history.versions(settings),
    "No model version registered yet: the first retraining registers one.",
)


def _batches(ids: list[int]) -> str:
    if not ids:
        return "-"
    return f"{ids[0]}-{ids[-1]}" if len(ids) > 1 else str(ids[0])


table = pd.DataFrame(
    [
        {
            "version": v.version,
            "serving": "yes" if v.production else "",
            "family": v.family,
            "batches": _batches(v.batch_ids),
            **{f"holdout {k}": v.holdout.get(k) for k in ("rmsle", "mae", "mape", "r2")},
            "promoted": {True: "yes", False: "no", None: "-"}[v.promoted],
            "decided": v.decided_at,
        }
        for v in (entry.status for entry in versions)
    ]
)
st.dataframe(table, hide_index=True, width="stretch")

dashboard = history.study_url(settings)
for entry in versions:
    v = entry.status
    title = f"Version {v.version}" + (" — serving now" if v.production else "")
    with st.expander(title, expanded=v.production):
        links = [f"[model version in MLflow]({entry.model_url})"]
        if entry.run_url:
            links.append(f"[training run]({entry.run_url})")
        if v.study:
            links.append(
                f"[Optuna study `{v.study}`]({dashboard})" if dashboard else f"study `{v.study}`"
            )
        st.markdown(" · ".join(links))
        st.markdown(f"**Trained on batches** {', '.join(map(str, v.batch_ids)) or 'unknown'}")
        if v.retrain_reason:
            st.markdown("**Why it was trained**")
            st.write(v.retrain_reason)
        if v.verdict:
            st.markdown(f"**Champion/challenger**: {v.verdict}")
        if not v.run_id:
            continue
        try:
            with st.spinner("Reading the study's pictures and the SHAP comparison..."):
                pictures = history.study_pictures(settings, v.run_id)
                change = history.shap_change(settings, v.run_id)
        except Exception as exc:
            ui.failure("The SHAP comparison of this version cannot be read", exc)
            continue
        if pictures:
            st.markdown("**The study that found it** (Optuna)")
            for column, png in zip(st.columns(len(pictures)), pictures.values(), strict=True):
                column.image(png)
        if change is None:
            st.caption("No SHAP comparison logged for this version.")
            continue
        previous = v.previous_version
        st.markdown(
            "**What changed in the model (SHAP)**"
            + (f" against version {previous}, production at the time" if previous else "")
        )
        if change.sentence:
            st.write(change.sentence)
        if change.png:
            st.image(change.png)
        st.dataframe(change.table, hide_index=True)
