"""The Streamlit app (`tasador ui`): Predict, Models, Leaderboard and Data pages."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="Tasador", layout="wide")
st.navigation(
    [
        st.Page(VIEWS / "predict.py", title="Predict", default=True),
        st.Page(VIEWS / "models.py", title="Models"),
        st.Page(VIEWS / "leaderboard.py", title="Leaderboard"),
        st.Page(VIEWS / "data.py", title="Data"),
    ]
).run()
