"""Predict page: a listing form, the price, the model that answered and why (SHAP)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import streamlit as st

from app import choices, serving_client, ui
from app.charts import dollars, waterfall
from tasador.core import db
from tasador.core.cleaning import ACRE_LOT_MAX, BATH_MAX, BED_MAX, HOUSE_SIZE_MAX, HOUSE_SIZE_MIN
from tasador.core.columns import STATUSES

OTHER_CITY = "(another city)"
settings = ui.settings()


@st.cache_data(ttl=300, show_spinner=False)
def form_choices(clean_url: str) -> choices.Choices:
    """The form's states, cities and zip codes from CLEAN, cached for five minutes."""
    return choices.load(db.engine_for(clean_url))


def price_range_text(prediction: dict[str, Any], info: dict[str, Any]) -> str:
    """The price's calibrated range in words, with what the version's holdout measured of it."""
    described = info.get("price_range") or {}
    if not prediction.get("low"):
        return f"No range: {described.get('detail') or 'the version has no price ranges'}."
    low, high, coverage = prediction["low"][0], prediction["high"][0], prediction["coverage"]
    text = f"Between **${low:,.0f}** and **${high:,.0f}** ({coverage:.0%} range)"
    measured = described.get("measured") or {}
    if "overall" in measured:
        text += f"; on the version's holdout such ranges held {measured['overall']:.0%} of prices"
    return text + "."


st.title("Predict a price")
api = settings.ui.serving_api_url
key = serving_client.api_key_of(settings.serving.serving_api_key)
try:  # which version will answer, before anything is asked of it
    serving = serving_client.model(api, key)
    st.markdown(
        f"Prices come from **{serving['name']}** version **{serving['version']}** "
        f"(alias `{serving['alias']}`, {serving.get('family') or 'family unknown'}, trained on "
        f"batches {serving.get('batch_range') or 'unknown'})."
    )
except serving_client.ServiceError as exc:
    st.warning(f"No model to answer yet. {exc}")

try:
    offered = form_choices(db.database_url("clean", settings.databases))
except Exception as exc:
    ui.failure("The collected data (CLEAN database) cannot be read, so no state list", exc)
    offered = choices.Choices(states=[])

left, right = st.columns(2)
with left:
    state: str | None
    if offered.states:
        state = st.selectbox("State", offered.states, help="States seen in the collected data.")
    else:
        st.info("No listings collected yet: states come from the collected data.")
        state = None
    cities = offered.cities.get(state, []) if state else []
    city: str | None = st.selectbox("City", [*cities, OTHER_CITY]) if cities else OTHER_CITY
    if city == OTHER_CITY:
        city = st.text_input("City name", max_chars=100).strip() or None
    zips = offered.zips.get((state, city), []) if state and city else []
    zip_code = st.text_input("Zip code", value=zips[0] if zips else "", max_chars=5).strip()
    zip_ok = zip_code == "" or re.fullmatch(r"[0-9]{1,5}", zip_code) is not None
    if not zip_ok:
        st.error("A zip code is up to 5 digits.")
    status = st.selectbox("Status", STATUSES)
with right:
    house_size = st.number_input(
        "House size (sq ft)",
        min_value=HOUSE_SIZE_MIN,
        max_value=HOUSE_SIZE_MAX,
        value=round(offered.typical_size / 10) * 10.0,
        step=50.0,
    )
    bed = st.number_input("Bedrooms", min_value=0, max_value=BED_MAX, value=3, step=1)
    bath = st.number_input("Bathrooms", min_value=0, max_value=BATH_MAX, value=2, step=1)
    acre_lot = st.number_input(
        "Lot (acres)", min_value=0.0, max_value=ACRE_LOT_MAX, value=0.2, step=0.05
    )
    sold_before = st.checkbox("Sold before")
    sold_on = (
        st.date_input("Previous sale", value=date(2015, 6, 1), min_value=date(1900, 1, 1))
        if sold_before
        else None
    )

listing: dict[str, Any] = {
    "state": state,
    "city": city,
    "zip_code": zip_code or None,
    "status": status,
    "house_size": house_size,
    "bed": int(bed),
    "bath": int(bath),
    "acre_lot": acre_lot,
    "prev_sold_date": sold_on.isoformat() if sold_on else None,
}
listing = {k: v for k, v in listing.items() if v is not None}

if st.button("Predict", type="primary", disabled=not zip_ok):
    try:
        with st.spinner("Pricing the listing and explaining the price (SHAP)..."):
            st.session_state["answer"] = {
                "listing": listing,
                "prediction": serving_client.predict(api, listing, key),
                "explanation": serving_client.explain(api, listing, key),
                "model": serving_client.model(api, key),
            }
    except serving_client.InvalidListing as exc:
        st.session_state.pop("answer", None)
        for field, reason in exc.fields.items():
            st.error(f"{field}: {reason}")
    except serving_client.ServiceError as exc:
        st.session_state.pop("answer", None)
        st.error(str(exc))

answer = st.session_state.get("answer")
if answer is not None:
    price = answer["prediction"]["predictions"][0]
    ref, info = answer["prediction"]["model"], answer["model"]
    st.metric("Predicted price", f"${price:,.0f}")
    st.markdown(price_range_text(answer["prediction"], info))
    st.caption(
        f"Answered by **{ref['name']}** version **{ref['version']}** (alias `{ref['alias']}`)"
        + ("" if answer["listing"] == listing else " for the listing as it was when you asked")
    )
    promoted = info.get("promoted_at")
    st.markdown(
        f"**Promoted** {promoted[:16].replace('T', ' ') + ' UTC' if promoted else 'date unknown'}"
        + (f" — {info['promotion']}" if info.get("promotion") else "")
    )
    if info.get("retrain_reason"):
        with st.expander("Why this model was trained"):
            st.write(info["retrain_reason"])
    st.altair_chart(waterfall(answer["explanation"]), width="stretch")
    st.caption(
        f"Base price {dollars(answer['explanation']['base_price'])}: what the model expects "
        "before looking at this listing; each bar multiplies it."
    )
