"""Leaderboard page: every retraining side by side, challenger against the production model of
the time on the same shared holdout, promoted or not, and the best trial of each family."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app import leaderboard, ui

settings = ui.settings()
st.title("Leaderboard")
st.caption(
    "One row per retraining (newest first): the challenger and the model that was in production "
    "then, scored on the same shared holdout rows of that study; lower RMSLE is better."
)

with st.spinner("Reading the retrainings from MLflow and the promotion records..."):
    board = ui.read_or_stop(
        "The leaderboard (MLflow runs, promotion records in CLEAN) cannot be read",
        lambda: leaderboard.board(settings),
        "No retraining yet.",
    )
retrains: pd.DataFrame = board["retrains"]
if retrains.empty:
    st.info("No retraining decided yet: the first champion/challenger fills this page.")
    st.stop()

links = {
    "MLflow run": st.column_config.LinkColumn("MLflow run", display_text="open run"),
    "optuna-dashboard": st.column_config.LinkColumn("optuna-dashboard", display_text="study"),
}
st.dataframe(retrains, hide_index=True, width="stretch", column_config=links)

# One chart row per challenger version: a study re-decided (or two decisions on one batch range)
# must not add its bars up.
retrains = retrains.assign(
    retraining=[
        f"v{v} ({s})" for v, s in zip(retrains["challenger"], retrains["study"], strict=True)
    ]
)
scores = retrains.melt(
    id_vars=["retraining", "promoted"],
    value_vars=[f"challenger {leaderboard.HOLDOUT}", f"production {leaderboard.HOLDOUT}"],
    var_name="model",
    value_name="holdout RMSLE",
).dropna(subset=["holdout RMSLE"])
scores["model"] = scores["model"].str.split(" ").str[0]
st.subheader("Holdout RMSLE per retraining")
st.altair_chart(
    alt.Chart(scores)
    .mark_bar()
    .encode(
        x=alt.X("holdout RMSLE:Q"),
        y=alt.Y("model:N", title=None),
        color=alt.Color("model:N"),
        row=alt.Row("retraining:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")),
        tooltip=["retraining", "model", "holdout RMSLE", "promoted"],
    )
    .properties(height=50),
    width="stretch",
)

trials: pd.DataFrame = board["trials"]
st.subheader("Best trial of each family, on the same shared holdout")
st.caption(
    "Each family's best trial by cross-validated RMSLE, refit on the search sample after its "
    "study and scored on the holdout rows the challenger and production were scored on."
)
if trials.empty:
    st.caption("No completed trial logged in this experiment.")
else:
    st.dataframe(trials, hide_index=True, width="stretch", column_config=links)
    st.altair_chart(
        alt.Chart(trials)
        .mark_point(filled=True, size=90)
        .encode(
            x=alt.X(f"{leaderboard.HOLDOUT}:Q", scale=alt.Scale(zero=False), title="holdout RMSLE"),
            y=alt.Y("study:N", title=None),
            color="family:N",
            tooltip=["study", "family", "trial", leaderboard.CV, leaderboard.HOLDOUT],
        ),
        width="stretch",
    )
