"""The page: `build_demo(translators)` assembles it from one module per view
(`explorer/views/`) and registers the public API (`explorer/api.py`)."""

import gradio as gr

from explorer.api import make_api
from explorer.service import Service
from explorer.views import STATIC, Shared
from explorer.views.ablation import AblationView
from explorer.views.alignment import AlignmentView
from explorer.views.attention import AttentionView
from explorer.views.attribution import AttributionView
from explorer.views.beam import BeamView
from explorer.views.head import HeadView
from explorer.views.heads import HeadsView
from explorer.views.lines import LinesView
from explorer.views.score import ScoreView
from explorer.views.steps import StepsView
from explorer.views.translate import TranslateView
from explorer.views.whatif import WhatIfView

TITLE = "Watch a Transformer translate"
# A visitor's translation is kept this long after their last event (seconds),
# and for at most this many sessions at once (the oldest go first): each
# holds one translation with its own attention copies, at most a few MB.
STATE_TIME_TO_LIVE = 1800
STATE_SESSION_CAPACITY = 1000
LAUNCH_OPTIONS = {"state_session_capacity": STATE_SESSION_CAPACITY}
INTRO = (
    f"# {TITLE}\n"
    "An encoder–decoder Transformer written from scratch in Keras 3 "
    "(`keras_mha`). Translate a sentence, then watch it being made: every "
    "attention head, each step's candidates, the beam, word alignments — or "
    "score your own translation and switch heads off. New here? "
    "[Take the tour](?tour=1)."
)


def build_demo(translators, failures=None, model_cards=None):
    """The app for these models.

    Args:
        translators: `{name: keras_mha.Translator}`, in dropdown order.
        failures: `{name: reason}` of model folders that did not load,
            listed on the page.
        model_cards: `{name: markdown}` shown under "Model card".

    Returns:
        A `gr.Blocks` with a queue; `demo.explorer` holds the views (their
        handlers are plain methods, for tests) and `demo.api` the endpoint
        functions.
    """
    gr.set_static_paths([STATIC])
    service = Service(translators)
    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600)) as demo:
        # The public endpoints first, so that they own their names
        # ("/translate", "/score") before the private events of the views.
        api = make_api(service)
        for name, fn in api.items():
            gr.api(fn, api_name=name)
        gr.Markdown(INTRO)
        shared = Shared(
            service=service, state=gr.State(None, time_to_live=STATE_TIME_TO_LIVE)
        )
        translate = TranslateView(shared, translators, model_cards, failures)
        with gr.Tabs(elem_id="explorer-tabs"):
            with gr.Tab("Attention", id="attention"):
                attention = AttentionView(shared)
            with gr.Tab("How a head works", id="head"):
                head = HeadView(shared)
            with gr.Tab("Token lines", id="lines"):
                lines = LinesView(shared)
            with gr.Tab("Step by step", id="steps"):
                steps = StepsView(shared)
                whatif = WhatIfView(shared, steps)
            with gr.Tab("Score your translation", id="score"):
                score = ScoreView(shared)
            with gr.Tab("Beam search", id="beam"):
                beam = BeamView(shared)
            with gr.Tab("Word alignment", id="alignment"):
                alignment = AlignmentView(shared)
            with gr.Tab("Attribution", id="attribution"):
                attribution = AttributionView(shared)
            with gr.Tab("Head statistics", id="heads"):
                heads = HeadsView(shared)
            with gr.Tab("Head ablation", id="ablation"):
                ablation = AblationView(shared)
        views = {
            "translate": translate,
            "attention": attention,
            "head": head,
            "lines": lines,
            "steps": steps,
            "whatif": whatif,
            "score": score,
            "beam": beam,
            "alignment": alignment,
            "attribution": attribution,
            "heads": heads,
            "ablation": ablation,
        }
        translate.wire(demo, [v for name, v in views.items() if name != "translate"])
    demo.explorer = views
    demo.api = api
    demo.service = service
    # No concurrency limit in the queue: `Service` runs one request per model
    # at a time and bounds those waiting for each (MAX_WAITING_PER_MODEL),
    # so that a busy model never holds the workers another model needs.
    demo.queue(default_concurrency_limit=None, max_size=64)
    return demo
