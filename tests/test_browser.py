"""The page in a real browser: Debian's Chromium driven by Playwright, on a
live `python app.py` serving the tiny fixture model.

One visit goes through the views as a visitor would: translate, switch head
and layer (with no request to the server), hover a cell, play a step, click
a candidate, score a typed translation, open the beam tree and a permalink.
Screenshots go to a temporary folder, or to `$KERAS_MHA_SCREENSHOT_DIR`.
"""

import os
import pathlib
import re
import urllib.parse

import pytest
from gradio_client import Client

from explorer.payload import decode_attention
from tests.app_fixtures import CHROMIUM, CHROMIUM_ARGS, TINY_MODEL, serve_app

pytestmark = pytest.mark.slow
SENTENCE = "Where is the train station? <b>not bold</b>"
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def url():
    with serve_app() as url:
        yield url


@pytest.fixture(scope="module")
def client(url):
    return Client(url, verbose=False)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = os.environ.get("KERAS_MHA_SCREENSHOT_DIR")
    folder = pathlib.Path(folder) if folder else tmp_path_factory.mktemp("shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: message.type == "error" and errors.append(message.text),
    )
    yield page
    page.close()
    assert not [e for e in errors if "KMHA" in e], errors


def drawn(page, view):
    """The serial the renderer `view` last drew ('' for nothing)."""
    return page.locator(f"#view-{view} .kmha-root").get_attribute("data-drawn")


def wait_drawn(page, view, serial=None):
    """Waits until `view` has drawn something (or the payload `serial`)."""
    page.wait_for_function(
        """([view, serial]) => {
            const root = document.querySelector(`#view-${view} .kmha-root`);
            const value = root && root.dataset.drawn;
            return value && (serial === null || value.startsWith(String(serial)));
        }""",
        arg=[view, serial],
    )


def open_page(page, url, tour_seen=True):
    """Loads the page and waits for the renderers of the first tab (the other
    tabs' views mount when their tab is first opened). `tour_seen`: as for a
    visitor who dismissed the guided tour before."""
    if tour_seen:
        page.add_init_script("localStorage.setItem('kmha-tour-done', '1')")
    page.goto(url)
    page.wait_for_function("window.KMHA && window.KMHA.store.views.length >= 2")


def payload(page):
    return page.evaluate("window.KMHA.store.payload")


def translate(page, text):
    page.locator("#source textarea").fill(text)
    before = (payload(page) or {}).get("serial")
    page.locator("#translate").click()
    page.wait_for_function(
        "s => { const p = window.KMHA.store.payload; return p && p.serial !== s; }",
        arg=before,
    )
    p = payload(page)
    mounted = page.evaluate("window.KMHA.store.views.map(v => v.name)")
    # Views that draw on request only: what if, score, attribution, a head.
    on_request = {"whatif", "score", "attribution", "head"}
    for view in {"summary", "attention"} | set(mounted) - on_request:
        wait_drawn(page, view, p["serial"])
    return p


def test_a_visit_through_every_view(url, client, page, screenshots):
    open_page(page, url)
    p = translate(page, SENTENCE)
    expected, _ = client.predict(
        SENTENCE, TINY_MODEL, "greedy", 4, api_name="/translate"
    )
    assert page.locator("#translation textarea").input_value() == expected
    assert page.locator("#translation-info").get_by_text("Translated in").count()
    # The user's HTML stays text: no <b> element made it into the page.
    assert page.locator("b", has_text="not bold").count() == 0
    chips = page.locator("#summary-chips .kmha-chip")
    assert chips.count() == len(p["tokens"]["target"])
    page.screenshot(path=screenshots / "translate.png")

    # Heads and layers switch in the browser: no request reaches the server.
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    attention = page.locator("#view-attention")
    title = attention.locator(".kmha-big .kmha-hm-title")
    assert title.inner_text() == "cross-attention, layer 0, head 0"
    attention.locator(".heads button", has_text="H1").click()
    assert title.inner_text() == "cross-attention, layer 0, head 1"
    attention.locator(".layers button", has_text="L1").click()
    assert title.inner_text() == "cross-attention, layer 1, head 1"
    attention.locator(".kinds button", has_text="decoder self-attention").click()
    assert title.inner_text() == "decoder self-attention, layer 1, head 1"
    attention.locator(".modes button", has_text="all layers × heads").click()
    assert attention.locator(".kmha-thumb").count() == 2 * 2
    attention.locator(".kmha-thumb").nth(1).locator("canvas").click()  # L0 H1.
    assert title.inner_text() == "decoder self-attention, layer 0, head 1"
    attention.locator(".kinds button", has_text="cross-attention").click()
    assert requests == [], requests

    # Hovering a cell shows its exact weight and both tokens.
    cells = attention.locator(".kmha-big canvas")
    box = cells.bounding_box()
    rows, cols = len(p["tokens"]["target"]), len(p["tokens"]["source"])
    r, c = 2, 3
    cells.hover(
        position={
            "x": (c + 0.5) * box["width"] / cols,
            "y": (r + 0.5) * box["height"] / rows,
        }
    )
    tooltip = page.locator("#kmha-tooltip")
    tooltip.wait_for(state="visible")
    weight = decode_attention(p, "cross")[0, 1, r * cols + c]
    text = tooltip.inner_text()
    assert f"weight {weight:.4f}" in text
    assert p["tokens"]["target"][r] in text and p["tokens"]["source"][c] in text
    # Clicking a token highlights its row.
    attention.locator(".kmha-label.row").nth(r).click()
    assert attention.locator(".kmha-label.row.hl").count() == 1
    page.locator("#view-attention").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "attention.png", full_page=True)
    # A download is made when asked for.
    attention.get_by_role("button", name="this head (.png)").click()
    download = page.locator("#export-file").get_by_text("cross_layer0_head1")
    download.wait_for()

    # Step by step: play one step.
    page.get_by_role("tab", name="Step by step").click()
    wait_drawn(page, "steps", p["serial"])
    steps = page.locator("#view-steps")
    assert steps.locator("#step-label").inner_text() == f"step 1 of {rows}"
    steps.locator("#step-play").click()
    page.wait_for_function(
        "document.querySelector('#view-steps .kmha-root').dataset.step === '1'"
    )
    steps.locator("#step-play").click()  # Pause.
    step = int(steps.locator(".kmha-root").get_attribute("data-step"))
    assert step >= 1
    page.wait_for_timeout(1500)  # Paused: the step stays.
    assert steps.locator("#step-label").inner_text() == f"step {step + 1} of {rows}"
    step_rows = steps.locator(".kmha-steprows[data-kind=cross] tbody tr")
    assert step_rows.count() == 2 * 2  # Every head of every layer.
    assert steps.locator("#step-output .kmha-chip").count() == step + 1

    # What if: a candidate at this step, and the translation that starts with it.
    candidate = steps.locator("#step-candidates .kmha-candidate:not(.chosen)").first
    piece = candidate.get_attribute("data-piece")
    candidate.click()
    forced = page.locator("#whatif-forced")
    forced.wait_for()
    pieces = forced.locator(".kmha-chip").evaluate_all(
        "chips => chips.map(c => c.dataset.piece)"
    )
    assert pieces[: step + 1] == [*p["tokens"]["target"][:step], piece]
    assert page.locator("#whatif-original .kmha-chip").count() == rows
    assert "log-probability" in forced.inner_text()
    page.screenshot(path=screenshots / "whatif.png", full_page=True)

    # Score a typed translation.
    page.get_by_role("tab", name="Score your translation").click()
    page.locator("#own-translation textarea").fill("¿Dónde está la estación de tren?")
    page.locator("#score").click()
    score_chips = page.locator("#score-chips .kmha-chip")
    score_chips.first.wait_for()
    scored = client.predict(
        SENTENCE, "¿Dónde está la estación de tren?", TINY_MODEL, api_name="/score"
    )
    assert (
        score_chips.evaluate_all("c => c.map(x => x.dataset.piece)")
        == (scored["target_tokens"])
    )
    summary = page.locator("#score-summary").inner_text()
    shown = float(re.search(r"log-probability (-?[\d.]+)", summary).group(1))
    assert shown == pytest.approx(scored["score"], abs=0.011)
    page.screenshot(path=screenshots / "score.png", full_page=True)

    # The beam: translate with beam search, open the tree, pick a hypothesis.
    page.get_by_role("tab", name="Beam search").click()
    page.get_by_label("beam search").check()
    p = translate(page, SENTENCE)
    wait_drawn(page, "beam", p["serial"])
    tree = page.locator("#beam-tree")
    assert tree.locator(".kmha-node").count() >= len(p["beam"]["steps"])
    hypotheses = page.locator("#beam-hypotheses button")
    assert hypotheses.count() == 4  # The default beam size.
    hypotheses.nth(1).click()
    page.wait_for_function(
        "document.querySelector('#view-beam .kmha-root').dataset.drawn.endsWith(':1')"
    )
    assert (
        page.locator("#translation textarea").input_value()
        == (p["beam"]["hypotheses"][1]["text"])
    )
    page.screenshot(path=screenshots / "beam.png", full_page=True)

    # The permalink of what is shown opens the page with that translation.
    link = page.locator("#permalink").get_attribute("href")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(link).query)
    assert query == {
        "model": [TINY_MODEL],
        "text": [SENTENCE],
        "decoding": ["beam"],
        "beam": ["4"],
    }


def test_a_permalink_opens_with_its_translation(url, client, page, screenshots):
    text = "The museum is closed on Mondays."
    query = urllib.parse.urlencode({"model": TINY_MODEL, "text": text})
    open_page(page, f"{url}?{query}")
    wait_drawn(page, "attention")
    expected, _ = client.predict(text, TINY_MODEL, "greedy", 4, api_name="/translate")
    assert page.locator("#source textarea").input_value() == text
    assert page.locator("#translation textarea").input_value() == expected
    assert payload(page)["text"] == text
    page.screenshot(path=screenshots / "permalink.png")


def test_alignment_and_head_statistics_are_drawn(url, page):
    open_page(page, url)
    p = translate(page, "Where is the train station?")
    page.get_by_role("tab", name="Word alignment").click()
    # The default, word deletion, is asked of the server once the view is
    # seen: the links arrive after the payload.
    default = p["alignment"]["methods"][0]
    assert default["id"] == p["alignment"]["default"] and default["links"] is None
    wait_drawn(page, "alignment", f"{p['serial']}:{default['id']}")
    view = page.locator("#view-alignment")
    assert view.locator(".kmha-word.source").count() == len(
        p["alignment"]["source_words"]
    )
    links = view.locator("#pharaoh").input_value()
    assert links and links == payload(page)["alignment"]["methods"][0]["links"]
    view.locator("#align-method").select_option("head:1:0")
    chosen = next(m for m in p["alignment"]["methods"] if m["id"] == "head:1:0")
    assert view.locator("#pharaoh").input_value() == chosen["links"]
    assert view.locator(".kmha-link").count() == len(chosen["links"].split())
    page.get_by_role("tab", name="Head statistics").click()
    wait_drawn(page, "heads", p["serial"])
    table = page.locator("#head-stats tbody tr")
    assert table.count() == len(p["stats"])
    # The importance column fills in when measured, one number per head.
    drop = page.locator("#head-stats tbody tr td:last-child")
    assert set(drop.all_inner_texts()) == {"–"}
    page.locator("#measure-importance").click()
    page.wait_for_function(
        "() => /measured in/.test("
        "document.querySelector('#importance-note')?.textContent || '')"
    )
    texts = page.locator("#head-stats tbody tr td:last-child").all_inner_texts()
    assert len(texts) == len(p["stats"]) and all(t != "–" for t in texts)
    [float(t) for t in texts]
    # A row opens its head in the Attention tab.
    table.filter(has_text="cross").nth(3).click()
    # The view may still show the head it had: wait for the chosen one.
    page.wait_for_function(
        "() => document.querySelector('#view-attention .kmha-big .kmha-hm-title')"
        "?.textContent === 'cross-attention, layer 1, head 1'"
    )


def test_the_guided_tour_walks_through_once_and_comes_back_on_request(url, page):
    open_page(page, url, tour_seen=False)
    tour = page.locator("#kmha-tour")
    tour.wait_for()
    steps = page.evaluate("window.KMHA_TOUR.steps")
    assert 5 <= steps <= 8
    titles = []
    for index in range(steps):
        titles.append(tour.locator(".kmha-tour-title").inner_text())
        # Each step outlines the part of the page it speaks of.
        assert page.locator(".kmha-tour-target").count() == 1
        if "head" in titles[-1].lower() or "positions" in titles[-1].lower():
            selected = page.locator('#explorer-tabs [role="tab"][aria-selected="true"]')
            assert selected.inner_text().strip() == "How a head works"
        page.locator("#kmha-tour-next").click()
    assert titles[0].startswith("1 ·") and titles[-1].startswith(f"{steps} ·")
    assert tour.count() == 0 and page.locator(".kmha-tour-target").count() == 0
    page.reload()
    page.wait_for_function("window.KMHA_TOUR !== undefined")
    page.wait_for_timeout(1000)
    assert page.locator("#kmha-tour").count() == 0  # Dismissed: not again.
    page.goto(url + "?tour=1")
    page.locator("#kmha-tour").wait_for()
    page.locator("#kmha-tour-skip").click()
    assert page.locator("#kmha-tour").count() == 0


def test_how_a_head_works_draws_the_attention_row(url, page, screenshots):
    open_page(page, url)
    p = translate(page, "Where is the train station?")
    page.get_by_role("tab", name="How a head works").click()
    page.locator("#head-keys").wait_for()
    weights = page.eval_on_selector_all(
        "#head-keys .kmha-weight", "cells => cells.map(c => Number(c.dataset.weight))"
    )
    # The default: cross-attention, layer 0, head 0, the first query.
    row = page.evaluate(
        "() => { const p = window.KMHA.store.payload; const n = p.tokens.source.length;"
        " const row = window.KMHA.headWeights(p, 'cross', 0, 0).slice(0, n);"
        " return Array.from(row, (v) => v / p.scale); }"
    )
    assert len(weights) == len(p["tokens"]["source"])
    assert max(abs(a - b) for a, b in zip(weights, row)) < 2e-3
    # Another head: the controls ask the server again.
    page.select_option("#head-kind", "encoder")
    page.wait_for_function(
        "() => { const note = document.querySelector('#view-head .kmha-note');"
        " return note && note.textContent.includes('encoder'); }"
    )
    assert page.locator('#view-head [data-stage="positions"] canvas').count() == 1
    # A row clicked in the attention view opens here on that row.
    page.get_by_role("tab", name="Attention").click()
    page.locator('#view-attention .kmha-label.row[data-index="2"]').first.click()
    page.locator("#open-head").click()
    page.wait_for_function(
        "() => { const q = document.querySelector('#head-query');"
        " const note = document.querySelector('#view-head .kmha-note');"
        " return q && q.value === '2' && note && note.textContent.includes('query'); }"
    )
    page.locator("#view-head").screenshot(path=str(screenshots / "head.png"))


def test_token_lines_are_built_once_and_follow_the_hovered_token(url, page):
    open_page(page, url)
    p = translate(page, "Where is the train station?")
    page.get_by_role("tab", name="Token lines").click()
    wait_drawn(page, "lines", p["serial"])
    view = page.locator("#view-lines")
    lines = view.locator("svg.kmha-lines line")
    count = lines.count()
    assert count > 0
    # Each line node marked: one built again would come without its mark.
    lines.evaluate_all("lines => lines.forEach((line, i) => (line.kmhaMark = i))")
    same_nodes = "lines => lines.every((line, i) => line.kmhaMark === i)"
    shown = view.locator('svg.kmha-lines line:not([display="none"])')

    view.locator('.kmha-token[data-side="left"]').nth(1).hover()
    rows = shown.evaluate_all("lines => [...new Set(lines.map(l => l.dataset.row))]")
    assert rows == ["1"]  # Only the lines of the hovered query.
    view.locator('.kmha-token[data-side="right"]').nth(2).hover()
    cols = shown.evaluate_all("lines => [...new Set(lines.map(l => l.dataset.col))]")
    assert cols == ["2"]
    page.mouse.move(0, 0)
    assert shown.count() == count
    assert lines.count() == count and lines.evaluate_all(same_nodes)
    # A head switched off hides its lines; none is rebuilt.
    view.locator(".kmha-swatch", has_text="H0").click()
    assert view.locator('g[data-head="0"]').get_attribute("display") == "none"
    assert lines.count() == count and lines.evaluate_all(same_nodes)


def step_of(page):
    return int(page.locator("#view-steps .kmha-root").get_attribute("data-step"))


def wait_step_beyond(page, step):
    page.wait_for_function(
        "s => Number(document.querySelector('#view-steps .kmha-root')"
        ".dataset.step) > s",
        arg=step,
    )


def test_the_step_player_stops_when_hidden_replaced_or_retranslated(url, page):
    open_page(page, url)
    p = translate(page, SENTENCE)
    assert len(p["tokens"]["target"]) >= 4
    page.get_by_role("tab", name="Step by step").click()
    wait_drawn(page, "steps", p["serial"])
    play = page.locator("#step-play")
    root = "document.querySelector('#view-steps .kmha-root')"

    # Another tab: the player stops, and stays stopped when shown again.
    play.click()
    wait_step_beyond(page, 0)
    page.get_by_role("tab", name="Attention").click()
    page.wait_for_function(f"{root}.offsetParent === null")
    step = step_of(page)
    page.wait_for_timeout(2000)  # Two periods of the player.
    assert step_of(page) == step
    page.get_by_role("tab", name="Step by step").click()
    assert play.inner_text() == "▶ play"
    page.wait_for_timeout(1000)
    assert step_of(page) == step

    # Its element taken out of the page (as when Gradio renders it again).
    page.locator("#step-slider").fill("0")
    play.click()
    wait_step_beyond(page, 0)
    step = page.evaluate(
        f"() => {{ window.kmhaSteps = {root}; window.kmhaParent = kmhaSteps.parentNode;"
        " kmhaSteps.remove(); return Number(kmhaSteps.dataset.step); }"
    )
    page.wait_for_timeout(2000)
    assert page.evaluate("() => Number(kmhaSteps.dataset.step)") == step
    page.evaluate("() => kmhaParent.append(kmhaSteps)")

    # A new translation: back to the first step, not playing.
    play.click()
    wait_step_beyond(page, step)
    translate(page, SENTENCE)
    assert step_of(page) == 0
    page.wait_for_timeout(2000)
    assert step_of(page) == 0 and play.inner_text() == "▶ play"


# The server's answers to `view` are held back until released, as a slow
# network would (the view gets them when `kmhaRelease()` is called).
HOLD_ANSWERS = """name => {
    const view = window.KMHA.store.views.find((v) => v.name === name);
    const setValue = view.setValue;
    window.kmhaHeld = [];
    view.setValue = function (value) {
        if (value) window.kmhaHeld.push(() => setValue.call(this, value));
        else setValue.call(this, value);
    };
    window.kmhaRelease = () => window.kmhaHeld.splice(0).forEach((f) => f());
}"""


def answer_held(page):
    page.wait_for_function("window.kmhaHeld.length === 1")


def test_a_late_what_if_or_score_is_not_drawn_over_a_newer_translation(url, page):
    open_page(page, url)
    p = translate(page, SENTENCE)
    page.get_by_role("tab", name="Step by step").click()
    wait_drawn(page, "steps", p["serial"])
    page.wait_for_function("window.KMHA.store.views.some(v => v.name === 'whatif')")
    page.evaluate(HOLD_ANSWERS, "whatif")
    candidates = page.locator("#step-candidates .kmha-candidate:not(.chosen)")
    # In time: drawn.
    candidates.nth(0).click()
    answer_held(page)
    page.evaluate("() => kmhaRelease()")
    page.locator("#whatif-forced").wait_for()
    assert drawn(page, "whatif").startswith(f"{p['serial']}:")
    # Late: the answer to the old translation arrives after the new one.
    # (Another candidate: Gradio passes on no value equal to the last.)
    candidates.nth(1).click()
    answer_held(page)
    translate(page, SENTENCE)
    page.evaluate("() => kmhaRelease()")
    assert drawn(page, "whatif") == ""
    assert page.locator("#whatif-forced").count() == 0

    page.get_by_role("tab", name="Score your translation").click()
    page.wait_for_function("window.KMHA.store.views.some(v => v.name === 'score')")
    page.evaluate(HOLD_ANSWERS, "score")
    page.locator("#own-translation textarea").fill("¿Dónde está la estación?")
    page.locator("#score").click()
    answer_held(page)
    page.evaluate("() => kmhaRelease()")
    page.locator("#score-chips .kmha-chip").first.wait_for()
    page.locator("#own-translation textarea").fill("¿Dónde está el tren?")
    page.locator("#score").click()
    answer_held(page)
    translate(page, SENTENCE)
    page.evaluate("() => kmhaRelease()")
    assert drawn(page, "score") == ""
    assert page.locator("#score-chips .kmha-chip").count() == 0
