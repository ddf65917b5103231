"""The explorer in a real browser: how long a visitor waits for each view.

    python -m benchmarks.bench_browser                    # both backends
    python -m benchmarks.bench_browser --quick --backends jax
    python -m benchmarks.bench_browser --screenshots docs/screenshots

Per backend, `python app.py` serves the models of `--models-dir` (see
`tests/app_fixtures.LiveServer`) and Debian's Chromium, driven by
Playwright, opens the page, opens every tab once (so that every view is
mounted, as after a visitor has looked around) and returns to Attention.
Times are taken in the page (`performance.now()`):

- translate → all views drawn: from the Translate click to the first
  animation frame after every mounted view has drawn the new payload
  (server time, transfer and drawing), for sentences of about ten words,
  and apart from it the page's own part: from the payload's arrival to every
  view drawn;
- head switch, layer switch: a click on a head (layer) button of the
  Attention tab to the next frame after it;
- step change: a click on "next step" of the Step-by-step tab to the next
  frame;
- how a head works: choosing another query in that tab to the frame after
  the server's stages for it are drawn (the server has the attention block
  traced by then), and apart from it the first view of a block (another
  layer or kind: a pass through the model first); the size of one head's
  `/head` answer (JSON);
- what-if: a click on a candidate to the first frame after the forced
  translation is drawn (a server round trip: re-decoding with the prefix).

The server's whole warm-up (`warm-up finished` in its log) comes first;
the first translation and the first what-if are untimed. With
`--screenshots DIR`, the first backend also saves a picture of each view.
"""

import argparse
import dataclasses
import os
import pathlib
import sys

if __package__ in (None, ""):  # Started as a file, not with -m.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from tests.app_fixtures import CHROMIUM, CHROMIUM_ARGS, LiveServer  # noqa: E402

NAME = "bench_browser"
# About ten words each, none of them an example of the app.
SENTENCES = (
    "My brother forgot his umbrella at the station yesterday evening.",
    "The children were playing in the park when it started raining.",
    "Could you tell me where I can buy a ticket for the bus?",
    "She has been learning to play the piano for three years.",
    "We should leave early tomorrow because the roads will be busy.",
    "I don't think he understood what the teacher was trying to say.",
    "The old man sat on the bench and fed the pigeons.",
    "They moved to a small village near the mountains last spring.",
)
TABS = (
    "Token lines",
    "Step by step",
    "Score your translation",
    "Beam search",
    "Word alignment",
    "Head statistics",
    "Attention",
)
# The next animation frame after a click's synchronous work: the frame that
# shows it.
NEXT_FRAME = "new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))"


@dataclasses.dataclass(frozen=True)
class Settings:
    translations: int = 16  # Timed Translate clicks (cycling the sentences).
    switches: int = 40  # Timed head and layer switches, step changes.
    whatifs: int = 8  # Timed candidate clicks.
    startup_timeout: float = 1200.0  # Up, then warmed up (each).
    timeout_ms: int = 120_000


FULL = Settings()
QUICK = Settings(translations=3, switches=6, whatifs=2)


# ------------------------------------------------------------ page
def open_page(page, url, settings):
    page.set_default_timeout(settings.timeout_ms)
    page.goto(url)
    page.wait_for_function("window.KMHA && window.KMHA.store.views.length >= 2")
    for tab in TABS:  # Mount every view.
        page.get_by_role("tab", name=tab).click()
    page.wait_for_function("window.KMHA.store.views.length >= 9")


def translate_ms(page, text):
    """Translate click → the frame after every mounted view drew the result."""
    page.locator("#source textarea").fill(text)
    before = page.evaluate(
        "window.KMHA.store.payload && window.KMHA.store.payload.serial"
    )
    page.evaluate(
        "() => { window.kmhaDone = null; window.kmhaStart = performance.now();"
        " document.querySelector('#translate').click(); }"
    )
    page.wait_for_function(
        """(before) => {
            const p = window.KMHA.store.payload;
            if (!p || p.serial === before) return false;
            const own = { whatif: 1, score: 1 };  // Reset to empty.
            const done = window.KMHA.store.views.every((v) => {
                const drawn = v.root.dataset.drawn || "";
                return own[v.name] ? drawn === "" : drawn.startsWith(String(p.serial));
            });
            if (done && window.kmhaDone === null) window.kmhaDone = performance.now();
            return done;
        }""",
        arg=before,
        polling="raf",
    )
    return page.evaluate(
        "() => { const t = window.KMHA.store.timing;"
        " return [window.kmhaDone - window.kmhaStart, t.drawn - t.arrived]; }"
    )


def head_view_ms(page, query, control="#head-query"):
    """In "How a head works", choosing `query` (or the value of another
    `control`: `#head-kind`, `#head-layer`) → the frame after the server's
    stages for it are drawn (one request, one payload)."""
    page.evaluate(
        "([control, value]) => {"
        " document.querySelector('#head-keys').dataset.old = '1';"
        " window.kmhaDone = null; window.kmhaStart = performance.now();"
        " const s = document.querySelector(control);"
        " s.value = String(value); s.dispatchEvent(new Event('change')); }",
        [control, query],
    )
    page.wait_for_function(
        """() => {
            const keys = document.querySelector("#head-keys");
            const done = keys && !keys.dataset.old;
            if (done && window.kmhaDone === null) window.kmhaDone = performance.now();
            return done;
        }""",
        polling="raf",
    )
    return page.evaluate("window.kmhaDone - window.kmhaStart")


def click_ms(page, selector):
    """A click on `selector` → the next frame (the view redraws synchronously)."""
    return page.evaluate(
        f"""async () => {{
            const button = document.querySelector({selector!r});
            const start = performance.now();
            button.click();
            await {NEXT_FRAME};
            return performance.now() - start;
        }}"""
    )


def switches_ms(page, group, count):
    """Alternating clicks on the buttons of a toolbar group of Attention."""
    sizes = page.evaluate(
        f"document.querySelectorAll('#view-attention .{group} button').length"
    )
    times = []
    for i in range(count):
        index = (i + 1) % sizes
        times.append(
            click_ms(page, f"#view-attention .{group} button:nth-of-type({index + 1})")
        )
    return times


def steps_ms(page, count):
    page.get_by_role("tab", name="Step by step").click()
    times = []
    for _ in range(count):
        last = page.evaluate(
            "(() => { const s = document.querySelector('#step-slider');"
            " return Number(s.value) >= Number(s.max); })()"
        )
        if last:  # Back to the start, untimed.
            page.evaluate(
                "(() => { const s = document.querySelector('#step-slider');"
                " s.value = 0; s.dispatchEvent(new Event('input')); })()"
            )
        times.append(click_ms(page, "#step-next"))
    return times


def whatif_ms(page, step):
    """Candidate click at `step` → the frame after the forced translation."""
    page.evaluate(
        "(step) => { const s = document.querySelector('#step-slider');"
        " s.value = step; s.dispatchEvent(new Event('input')); }",
        step,
    )
    before = page.locator("#view-whatif .kmha-root").get_attribute("data-drawn")
    page.evaluate(
        "() => { window.kmhaDone = null; window.kmhaStart = performance.now();"
        " document.querySelector('#step-candidates .kmha-candidate:not(.chosen)')"
        ".click(); }"
    )
    page.wait_for_function(
        """(before) => {
            const root = document.querySelector("#view-whatif .kmha-root");
            const drawn = root.dataset.drawn;
            const done = drawn && drawn !== before;
            if (done && window.kmhaDone === null) window.kmhaDone = performance.now();
            return done;
        }""",
        arg=before,
        polling="raf",
    )
    return page.evaluate("window.kmhaDone - window.kmhaStart")


# A person's translation of SENTENCES[0], by target language, for the
# picture of the scoring view.
REFERENCES = {
    "es": "Mi hermano olvidó su paraguas en la estación ayer por la tarde.",
    "de": "Mein Bruder hat gestern Abend seinen Regenschirm am Bahnhof vergessen.",
    "fr": "Mon frère a oublié son parapluie à la gare hier soir.",
}


def screenshots(page, folder, model):
    """A picture of the page's top and of each view, with the last translation
    (the guided tour, which a fresh browser opens, dismissed first)."""
    folder.mkdir(parents=True, exist_ok=True)
    skip = page.get_by_role("button", name="Skip the tour")
    if skip.count() and skip.first.is_visible():
        skip.first.click()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=folder / "translate.png")
    tabs = page.locator("#explorer-tabs")
    for tab, name in [
        ("Attention", "attention"),
        ("Token lines", "lines"),
        ("Step by step", "steps"),
        ("Beam search", "beam"),
        ("Word alignment", "alignment"),
        ("Head statistics", "heads"),
        ("How a head works", "head"),
    ]:
        page.get_by_role("tab", name=tab).click()
        if name == "steps":
            whatif_ms(page, 2)
        page.wait_for_timeout(300)
        tabs.screenshot(path=folder / f"{name}.png")
    reference = REFERENCES.get(model.rsplit("-", 1)[-1])
    if reference:
        page.get_by_role("tab", name="Score your translation").click()
        page.locator("#own-translation textarea").fill(reference)
        page.locator("#score").click()
        page.locator("#score-chips").wait_for()
        page.wait_for_timeout(300)
        tabs.screenshot(path=folder / "score.png")


def run_worker(args, settings):
    from playwright.sync_api import sync_playwright

    backend = os.environ.get("KERAS_BACKEND")
    result = {}
    with LiveServer(args.models_dir) as server:
        server.wait_until_up(settings.startup_timeout)
        # Every program compiled first: the views are timed as a visitor
        # meets them once the server is warm, not beside its compiling.
        server.wait_for_output("warm-up finished", settings.startup_timeout)
        url = f"{server.url}?model={args.model}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            open_page(page, url, settings)
            translate_ms(page, SENTENCES[-1])  # Untimed.
            times = [
                translate_ms(page, SENTENCES[i % len(SENTENCES)])
                for i in range(settings.translations)
            ]
            result["translate_drawn"] = harness.summarize_ms(
                [total / 1e3 for total, _ in times]
            )
            # The page's own part: from the payload's arrival to every view
            # drawn (`store.timing`, taken in `publish`).
            result["translate_drawing"] = harness.summarize_ms(
                [drawing / 1e3 for _, drawing in times]
            )
            result["payload_kb"] = round(
                page.evaluate("JSON.stringify(window.KMHA.store.payload).length")
                / 1024,
                1,
            )
            result["target_pieces"] = page.evaluate(
                "window.KMHA.store.payload.tokens.target.length"
            )
            for group, key in (("heads", "head_switch"), ("layers", "layer_switch")):
                times = switches_ms(page, group, settings.switches)
                result[key] = harness.summarize_ms([t / 1e3 for t in times])
            times = steps_ms(page, settings.switches)
            result["step_change"] = harness.summarize_ms([t / 1e3 for t in times])
            result["head_view"] = head_view_timing(page, server.url, args, settings)
            # One candidate per step (a repeated one would draw nothing new).
            whatif_ms(page, 0)  # Untimed.
            steps = range(1, min(settings.whatifs + 1, result["target_pieces"] - 1))
            times = [whatif_ms(page, step) for step in steps]
            result["whatif"] = harness.summarize_ms([t / 1e3 for t in times])
            if args.screenshots and backend == args.backends[0]:
                page.get_by_label("beam search").check()
                translate_ms(page, SENTENCES[0])
                screenshots(page, pathlib.Path(args.screenshots), args.model)
            browser.close()
        server.check_alive()
    for key in (
        "translate_drawn",
        "head_switch",
        "layer_switch",
        "step_change",
        "head_view",
        "whatif",
    ):
        harness.log(
            f"[{backend}] {key}: p50 {result[key]['median_ms']:.0f} ms, "
            f"p95 {result[key]['p95_ms']:.0f} ms"
        )
    return result


def head_view_timing(page, url, args, settings):
    """ "How a head works" for one head of the last translation: each query
    chosen in turn (after the first, the server has the block traced), then
    every other attention block, each the first time (a pass through the
    model), and the size of one head's answer (`/head`, JSON)."""
    import json

    from gradio_client import Client

    page.get_by_role("tab", name="How a head works").click()
    page.locator("#head-keys").wait_for()
    count = page.evaluate("window.KMHA.store.payload.tokens.decoder.length")
    times = [head_view_ms(page, (i + 1) % count) for i in range(settings.whatifs)]
    summary = harness.summarize_ms([t / 1e3 for t in times])
    # Blocks not traced yet: the other cross-attention layers, then the last
    # layer's decoder self-attention and encoder self-attention.
    layers = page.evaluate("window.KMHA.store.payload.shape.cross[0]")
    blocks = [head_view_ms(page, layer, "#head-layer") for layer in range(1, layers)]
    for kind in ("decoder", "encoder"):
        blocks.append(head_view_ms(page, kind, "#head-kind"))
    summary["new_block"] = harness.summarize_ms([t / 1e3 for t in blocks])
    p = page.evaluate("window.KMHA.store.payload.tokens")
    client = Client(url, verbose=False, analytics_enabled=False)
    answer = client.predict(
        SENTENCES[(settings.translations - 1) % len(SENTENCES)],  # The last.
        "",
        args.model,
        "cross",
        0,
        0,
        0,
        api_name="/head",
    )
    summary["payload_kb"] = round(len(json.dumps(answer)) / 1024, 1)
    summary["source_pieces"] = len(p["source"])
    return summary


# ------------------------------------------------------------ parent
METRICS = [
    ("translate → all views drawn p50, ms", "translate_drawn.median_ms", "<= 300", 0),
    ("translate → all views drawn p95, ms", "translate_drawn.p95_ms", "<= 600", 0),
    ("payload arrived → all views drawn p50, ms", "translate_drawing.median_ms", "", 0),
    ("payload arrived → all views drawn p95, ms", "translate_drawing.p95_ms", "", 0),
    ("how a head works, query → drawn p50, ms", "head_view.median_ms", "<= 300", 0),
    ("how a head works, query → drawn p95, ms", "head_view.p95_ms", "", 0),
    (
        "how a head works, a block not traced yet → drawn p50, ms",
        "head_view.new_block.median_ms",
        "",
        0,
    ),
    ("one head's answer (/head JSON), KB", "head_view.payload_kb", "<= 200", 1),
    ("head switch p50, ms", "head_switch.median_ms", "<= 50", 1),
    ("head switch p95, ms", "head_switch.p95_ms", "", 1),
    ("layer switch p50, ms", "layer_switch.median_ms", "<= 50", 1),
    ("layer switch p95, ms", "layer_switch.p95_ms", "", 1),
    ("step change p50, ms", "step_change.median_ms", "<= 50", 1),
    ("step change p95, ms", "step_change.p95_ms", "", 1),
    ("what-if re-decode p50, ms", "whatif.median_ms", "<= 400", 0),
    ("what-if re-decode p95, ms", "whatif.p95_ms", "", 0),
    ("payload of the last translation, KB", "payload_kb", "", 1),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument(
        "--models-dir", default="saved_models", help="KERAS_MHA_MODELS_DIR"
    )
    parser.add_argument("--model", default="en-es", help="model folder name")
    parser.add_argument("--screenshots", help="save a picture of each view here")
    args = parser.parse_args(argv)
    args.models_dir = str(pathlib.Path(args.models_dir).resolve())
    settings = QUICK if args.quick else FULL

    if args.backend_worker:
        harness.finish_worker(args, run_worker(args, settings))
        return 0

    if not CHROMIUM.is_file():
        harness.log(f"{CHROMIUM} is missing: apt-get install chromium")
        return 1
    backends = harness.run_workers(__file__, args.backends)
    table = harness.metric_table(METRICS, backends)
    print(table)
    summary = {
        name: {
            key: harness.lookup(result, f"{key}.median_ms")
            for key in ("translate_drawn", "head_switch", "step_change", "whatif")
        }
        for name, result in backends.items()
    }
    settings = dict(dataclasses.asdict(settings), model=args.model)
    settings["models_dir"] = args.models_dir
    settings["sentences"] = list(SENTENCES)
    path = harness.write_results(NAME, args, settings, backends, table, summary)
    harness.log(f"results written to {path}")
    return harness.exit_code(backends)


if __name__ == "__main__":
    sys.exit(main())
