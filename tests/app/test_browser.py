"""One real browser: the Streamlit app started as `tasador ui` starts it, driven by Debian's
headless Chromium through Playwright, predicting a price against the world's prediction API."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from app import choices
from tasador.core import db, services
from tasador.core.config import settings_env
from tests.helpers.ui import World

pytestmark = pytest.mark.browser  # drives Chromium (and the world's servers)

# The system browser (Playwright's own browser download needs a network this machine lacks);
# `make test CHROMIUM=...` names another Chrome or Chromium.
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000
STATE, HOUSE_SIZE = "Texas", 2_400


@contextmanager
def ui_server(world: World, log_path: Path) -> Iterator[str]:
    """`tasador ui --port P` in a subprocess, configured like a deployment: by environment."""
    port = services.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASADOR_")}
    env |= settings_env(world.settings) | {"TASADOR_SERVING_API_URL": world.api_url}
    command = [str(Path(sys.executable).with_name("tasador")), "ui", "--port", str(port)]
    with services.running(command, f"{url}/_stcore/health", log_path, timeout_s=120, env=env):
        yield url


def settled(page: Page) -> None:
    """Wait for the script's rerun to end (the page then holds no stale elements)."""
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")


def predict_in_browser(page: Page, url: str, city: str, zip_code: str) -> None:
    page.goto(url)
    state = page.get_by_role("combobox", name="State")
    expect(state).to_be_visible()
    settled(page)
    state.click()
    state.fill(STATE)
    page.get_by_role("option", name=STATE, exact=True).click()
    expect(state).to_have_value(STATE)
    settled(page)
    # The rerun offers the state's cities (most listed first) and the city's first zip code.
    expect(page.get_by_role("combobox", name="City")).to_have_value(city)
    expect(page.get_by_label("Zip code")).to_have_value(zip_code)
    size = page.get_by_label("House size (sq ft)")
    size.fill(str(HOUSE_SIZE))
    size.press("Enter")
    expect(size).to_have_value(f"{HOUSE_SIZE:.2f}")
    settled(page)
    page.get_by_role("button", name="Predict").click()
    expect(page.get_by_test_id("stMetricLabel")).to_have_text("Predicted price")
    expect(page.get_by_test_id("stVegaLiteChart").first).to_be_visible()  # the waterfall
    settled(page)


def test_a_person_predicts_a_price_in_headless_chromium(world: World, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium package "
            "(or run `apt-get install -y chromium`)."
        )
    offered = choices.load(db.engine("clean", world.settings.databases))
    city = offered.cities[STATE][0]
    zip_code = offered.zips[STATE, city][0]
    screenshot = tmp_path / "predict.png"

    with ui_server(world, tmp_path / "streamlit.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            try:
                predict_in_browser(page, url, city, zip_code)
            except Exception:
                page.screenshot(path=tmp_path / "failure.png", full_page=True)
                (tmp_path / "failure.html").write_text(page.content())
                raise
            shown = page.get_by_test_id("stMetricValue").inner_text().strip()
            caption = page.get_by_text("Answered by").inner_text()
            alerts = page.get_by_test_id("stAlert").all_inner_texts()
            exceptions = page.get_by_test_id("stException").count()
            page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()

    listing = {
        "state": STATE,
        "city": city,
        "zip_code": zip_code,
        "status": "for_sale",
        "house_size": float(HOUSE_SIZE),
        "bed": 3,
        "bath": 2,
        "acre_lot": 0.2,
    }
    answer = httpx.post(f"{world.api_url}/predict", json=listing, timeout=30).json()
    assert shown == f"${answer['predictions'][0]:,.0f}"
    assert f"{world.settings.mlflow.model_name} version {world.versions[1]}" in caption
    assert "(alias production)" in caption
    assert not alerts and not exceptions, alerts
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 30_000, "the screenshot looks empty"


# The README shows these: every page after a demo-like world, each with what it must draw.
# They go to the test's folder unless TASADOR_SCREENSHOTS names one (the README's come from
# `TASADOR_SCREENSHOTS=docs/images pytest tests/app/test_browser.py`).
SCREENSHOTS_ENV = "TASADOR_SCREENSHOTS"
PAGES = (  # (URL path, file name, test id of a chart the page must draw)
    ("", "predict.png", "stVegaLiteChart"),
    ("models", "models.png", "stImage"),
    ("leaderboard", "leaderboard.png", "stVegaLiteChart"),
    ("data", "data.png", None),
)


def test_every_page_renders_its_charts_in_headless_chromium(world: World, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package.")
    offered = choices.load(db.engine("clean", world.settings.databases))
    city = offered.cities[STATE][0]
    zip_code = offered.zips[STATE, city][0]
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    shots: dict[str, Path] = {}
    with ui_server(world, tmp_path / "streamlit.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
        )
        try:
            # Tall: Streamlit scrolls inside its own container, so a full-page screenshot is
            # only as tall as the viewport, and the explanation sits below the fold.
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            for path, name, chart in PAGES:
                try:
                    if path == "":
                        predict_in_browser(page, url, city, zip_code)
                        expect(page.get_by_text("Prices come from")).to_be_visible()
                    else:
                        page.goto(f"{url}/{path}")
                        expect(page.get_by_test_id("stApp")).to_be_visible()
                        settled(page)
                        expect(page.get_by_role("heading").first).to_be_visible()
                    if chart is not None:
                        expect(page.get_by_test_id(chart).first).to_be_visible()
                    assert page.get_by_test_id("stException").count() == 0, name
                except Exception:
                    page.screenshot(path=tmp_path / f"failure-{name}", full_page=True)
                    raise
                shots[name] = folder / name
                page.screenshot(path=shots[name], full_page=True, type="png")
        finally:
            browser.close()
    for name, shot in shots.items():
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert shot.stat().st_size > 20_000, f"{name} looks empty"
