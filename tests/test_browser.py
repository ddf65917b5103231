"""The page in a real browser: Debian's Chromium driven by Playwright.

Types a sentence, clicks Translate, waits for the translation and the
heatmap, and saves screenshots for the README into
`$KERAS_MHA_SCREENSHOT_DIR` (default `docs/screenshots/`).
"""

import os
import pathlib

import pytest
from gradio_client import Client

from tests.app_fixtures import REPO_ROOT, TINY_MODEL, serve_app

pytestmark = pytest.mark.slow
CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SENTENCE = "Where is the train station? <b>not bold</b>"
TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def url():
    with serve_app() as url:
        yield url


@pytest.fixture
def page():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def test_translate_and_see_the_heatmap(url, page):
    screenshots = pathlib.Path(
        os.environ.get("KERAS_MHA_SCREENSHOT_DIR", REPO_ROOT / "docs" / "screenshots")
    )
    screenshots.mkdir(parents=True, exist_ok=True)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.locator("#source textarea").fill(SENTENCE)
    page.locator("#translate").click()

    info = page.locator("#translation-info")
    info.get_by_text("Translated in").wait_for()
    heatmap = page.locator("#head-plot img")
    heatmap.wait_for()
    assert heatmap.evaluate("img => img.naturalWidth") > 100

    expected, _ = Client(url, verbose=False).predict(
        SENTENCE, TINY_MODEL, "greedy", 4, api_name="/translate"
    )
    assert page.locator("#translation textarea").input_value() == expected
    # The user's HTML stays text: no <b> element made it into the page.
    assert page.locator("#source textarea").input_value() == SENTENCE
    assert page.locator("b", has_text="not bold").count() == 0

    page.screenshot(path=screenshots / "translate.png")
    page.screenshot(path=screenshots / "explorer.png", full_page=True)
    assert (screenshots / "translate.png").stat().st_size > 10_000

    # Head ablation: the checkboxes were filled in by the translation.
    page.get_by_role("tab", name="Head ablation").click()
    page.locator("#ablate-cross").get_by_label("L0 H1").check()
    page.locator("#ablate").click()
    page.locator("#ablation-info").get_by_text("1 head(s) switched off").wait_for()
    original = page.locator("#original textarea").input_value()
    assert original == expected
    page.locator("#ablate").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "ablation.png")
