"""Predict page (streamlit AppTest) against the real prediction API and CLEAN database."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from streamlit.testing.v1 import AppTest

from tests.helpers import REPO
from tests.helpers.ui import World

PAGE = str(REPO / "app" / "views" / "predict.py")


def page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=60).run()


def test_the_form_offers_the_collected_states_and_predicts(world: World, ui_env: Callable) -> None:
    at = page()
    assert not at.exception
    state = at.selectbox[0]
    assert state.label == "State"
    assert {"Florida", "California", "Texas"} <= set(state.options)
    assert state.value == state.options[0]  # the most listed state comes first
    state.select("Texas").run()
    assert at.selectbox[1].label == "City" and "Houston" in at.selectbox[1].options
    at.number_input[0].set_value(2_400.0).run()

    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = at.metric[0].value
    listing = {
        "state": "Texas",
        "city": at.selectbox[1].value,
        "zip_code": at.text_input[0].value,
        "status": "for_sale",
        "house_size": 2_400.0,
        "bed": 3,
        "bath": 2,
        "acre_lot": 0.2,
    }
    expected = httpx.post(f"{world.api_url}/predict", json=listing).json()["predictions"][0]
    assert shown == f"${expected:,.0f}"
    answered = httpx.post(f"{world.api_url}/predict", json=listing).json()
    low, high = answered["low"][0], answered["high"][0]
    assert any(
        f"Between **${low:,.0f}** and **${high:,.0f}** (80% range)" in m.value
        and "such ranges held" in m.value
        for m in at.markdown
    ), [m.value for m in at.markdown]
    caption = at.caption[0].value
    assert f"version **{world.versions[1]}**" in caption and "`production`" in caption
    assert any("Version 2 wins" in m.value for m in at.markdown)
    assert len(at.get("vega_lite_chart")) == 1  # the SHAP waterfall (altair)


def test_a_bad_zip_code_is_flagged_before_any_request(world: World, ui_env: Callable) -> None:
    at = page()
    at.text_input[0].set_value("7a8").run()
    assert any("up to 5 digits" in e.value for e in at.error)
    assert at.button[0].disabled


def test_api_down_is_said_in_words(world: World, ui_env: Callable) -> None:
    ui_env(serving_api_url="http://127.0.0.1:9")
    at = page()
    at.button[0].click().run()
    assert not at.exception
    assert any("not reachable" in e.value and "tasador serve" in e.value for e in at.error)
    assert not at.metric
