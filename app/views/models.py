"""Models page: every version with its metrics, data, reason and promotion; what SHAP says
changed between consecutive production models; how @challenger and @production disagree on live
traffic (shadow scoring); links to MLflow and optuna-dashboard; and a rollback for an operator
(the same call as `tasador rollback`: experiments.rollback)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from app import charts, history, ui
from experiments.rollback import rollback, rollback_target
from tasador.core.errors import TasadorError
from tasador.core.metrics import LABELS, readable
from tasador.core.records import VersionStatus

settings = ui.settings()
st.title("Models")
st.caption(
    f"Registered model **{settings.mlflow.model_name}**; "
    f"alias `{settings.mlflow.production_alias}` serves."
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


def _improvement(v: VersionStatus) -> str:
    """The interval of the holdout RMSLE improvement over the production it faced."""
    return "-" if v.improvement is None else f"{v.improvement[0]:+.1%} to {v.improvement[1]:+.1%}"


table = pd.DataFrame(
    [
        {
            "version": v.version,
            "serving": "yes" if v.production else "",
            "family": v.family,
            "batches": _batches(v.batch_ids),
            **{f"holdout {label}": readable(k, v.holdout.get(k)) for k, label in LABELS.items()},
            "improvement": _improvement(v),
            "promoted": {True: "yes", False: "no", None: "-"}[v.promoted],
            "decided by": v.guard or "-",
            "decided": v.decided_at,
        }
        for v in (entry.status for entry in versions)
    ]
)
st.dataframe(table, hide_index=True, width="stretch")
rules = settings.promotion
st.caption(
    "Holdout figures: RMSLE (lower is better), mean and median absolute error as a share of the "
    "price (MAPE, MdAPE), R². Improvement: the interval of the RMSLE gain over the production "
    f"model it faced, at {rules.promotion_confidence * 100:g}% confidence (a paired "
    f"bootstrap); promoted only when it lies beyond the {rules.promotion_margin * 100:g}% margin "
    f"and no state, land or houses is worse by more than {rules.promotion_segment_limit * 100:g}%."
)


def _rollback_form() -> None:
    """Pick a version (default: the previous production), give a reason, confirm, roll back."""
    st.subheader("Roll back")
    others = [e.status.version for e in versions if not e.status.production]
    moved = st.session_state.get("rolled_back")
    if moved is not None:  # the move of the last submit (the page was re-run to show it)
        st.success(
            f"Version {moved.version} is {settings.mlflow.production_alias} again (was "
            f"{moved.previous_version}); serving follows within "
            f"{settings.serving.serving_poll_s:g} s."
        )
        st.dataframe(pd.DataFrame([dataclasses.asdict(moved)]), hide_index=True)
    if not others:
        st.caption("No other version to roll back to.")
        return
    try:
        target = rollback_target(settings)
    except TasadorError:
        target = None  # no predecessor on record: the newest other version is offered first
    with st.form("rollback"):
        version = st.selectbox(
            "Version to serve",
            others,
            index=others.index(target) if target in others else 0,
            help="Default: the version that served before the current one.",
        )
        reason = st.text_input("Reason (kept in the audit table)")
        confirmed = st.checkbox(f"Move {settings.mlflow.production_alias} to this version")
        if not st.form_submit_button("Roll back"):
            return
    if not reason.strip():
        st.error("Give a reason: it is the audit record.")
    elif not confirmed:
        st.warning("Tick the confirmation to roll back.")
    else:
        try:
            st.session_state["rolled_back"] = rollback(settings, reason, int(version))
        except Exception as exc:
            ui.failure(f"Version {version} cannot be put back", exc)
            return
        st.rerun()  # the table above shows the new production


_rollback_form()
st.subheader("Challenger vs production on live traffic")
try:
    live = history.live_disagreement(settings)
except Exception as exc:
    ui.failure("The shadow predictions (RAW) cannot be read", exc)
    live = None
else:
    if live is None:
        st.caption("No challenger other than the version serving: nothing to shadow.")
if live is not None:
    st.write(live.sentence())
    if live.rows:
        st.altair_chart(charts.log_ratio_histogram(live.histogram), width="stretch")
        st.markdown("**Largest disagreements by state**")
        st.dataframe(live.by_state, hide_index=True)

dashboard = history.study_url(settings.ui)
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
