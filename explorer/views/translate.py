"""The top of the page: the text, the model (with its domain and examples),
the decoding, the Translate button, the translation with each piece's
probability, and permalinks (`?model=en-es&text=...`)."""

import html

import gradio as gr

from explorer import models, payload
from explorer.service import (
    BEAM_SIZES,
    EMPTY_INPUT,
    LAYER_PREDICTIONS,
    MAX_INPUT_CHARS,
    TOP_K,
    TRUNCATED_INPUT,
    friendly_errors,
)
from explorer.state import ExplorerState, Request
from explorer.views import browser_view


def describe(translation, seconds, beam, message=""):
    """The Markdown line under the translation."""
    decoding = "greedy" if beam == 1 else f"beam search (beam {beam})"
    warning = f"⚠️ {message} " if message else ""
    return (
        f"{warning}Translated in **{seconds:.2f} s** with {decoding}: "
        f"{len(translation.source_tokens)} source pieces → "
        f"{len(translation.target_tokens)} output pieces, "
        f"log-probability {payload.log_prob(translation):.2f}."
    )


class TranslateView:
    """Input, model choice, translation and the payload of every other view.

    Args:
        shared: the `explorer.views.Shared` of the demo; this view sets its
            `payload`, `output` and `info`.
        translators: `{name: Translator}`.
        model_cards: `{name: markdown}`.
        failures: `{name: reason}` of the folders that did not load.
    """

    def __init__(self, shared, translators, model_cards=None, failures=None):
        self.shared = shared
        self.translators = translators
        self.model_cards = model_cards or {}
        self.dependents = []
        choices = [(models.model_label(t), name) for name, t in translators.items()]
        default = self.default = models.default_model(translators)
        if failures or not translators:
            lines = [
                f"- `{html.escape(name)}`: {html.escape(reason)}"
                for name, reason in (failures or {}).items()
            ]
            gr.Markdown(
                "**Some models could not be loaded.**\n" + "\n".join(lines)
                if failures
                else "**No models found.**",
                elem_id="model-failures",
            )
        with gr.Row():
            with gr.Column():
                self.source = gr.Textbox(
                    label="Text to translate",
                    lines=3,
                    max_length=MAX_INPUT_CHARS,
                    placeholder="Type a sentence…",
                    elem_id="source",
                )
                with gr.Row(equal_height=True):
                    self.model = gr.Dropdown(
                        choices,
                        value=default,
                        label="Model",
                        elem_id="model",
                        scale=1,
                        min_width=260,
                    )
                    self.model_info = gr.Markdown(
                        self.domain(default), elem_id="model-info", min_width=220
                    )
                with gr.Row():
                    self.decoding = gr.Radio(
                        [("greedy", "greedy"), ("beam search", "beam")],
                        value="greedy",
                        label="Decoding",
                        elem_id="decoding",
                    )
                    self.beam_size = gr.Radio(
                        list(BEAM_SIZES),
                        value=4,
                        label="Beam size",
                        visible=False,
                        elem_id="beam-size",
                    )
                self.button = gr.Button(
                    "Translate", variant="primary", elem_id="translate"
                )
            with gr.Column():
                shared.output = gr.Textbox(
                    label="Translation",
                    lines=3,
                    interactive=False,
                    elem_id="translation",
                )
                shared.payload = browser_view("summary")
                shared.info = gr.Markdown(elem_id="translation-info")
        self.examples = gr.Dataset(
            components=[self.source],
            samples=self.samples(default),
            label="Examples from the model's domain",
            elem_id="examples",
        )
        with gr.Accordion("Model card", open=False):
            self.card = gr.Markdown(self.card_text(default), elem_id="model-card")

    # ------------------------------------------------------------ handlers
    def domain(self, model):
        translator = self.translators.get(model)
        if not translator:
            return ""
        text = models.domain_markdown(translator)
        if model in self.shared.service.warming():
            text += (
                "  \n*Still warming up (loading and compiling): its first "
                "translation may take a few seconds.*"
            )
        return text

    def samples(self, model):
        translator = self.translators.get(model)
        return [[s] for s in models.examples(translator)] if translator else []

    def card_text(self, model):
        return self.model_cards.get(model, "No model card.")

    def choose_model(self, model):
        """Model dropdown: its domain, examples and card."""
        return {
            self.model_info: self.domain(model),
            self.examples: gr.update(samples=self.samples(model)),
            self.card: self.card_text(model),
        }

    def use_example(self, sample):
        return {self.source: sample[0] if sample else ""}

    @friendly_errors
    def translate(self, text, model, decoding="greedy", beam_size=4):
        """Translate button: the translation and every view's new content."""
        translation, seconds, beam = self.shared.service.translate(
            text, model, decoding, beam_size, layer_predictions=LAYER_PREDICTIONS
        )
        if not translation.source_tokens:
            gr.Warning(EMPTY_INPUT)
            return self.show(None, EMPTY_INPUT)
        message = ""
        if translation.truncated:
            message = TRUNCATED_INPUT
            gr.Warning(message)
        request = Request(str(text or ""), model, decoding, beam, TOP_K)
        card = self.translators[model].card if model in self.translators else {}
        measured = (card.get("alignment") or {}).get("aer") or {}
        state = ExplorerState(request, translation, measured_aer=dict(measured))
        return self.show(state, describe(translation, seconds, beam, message))

    def show(self, state, info):
        """Named updates showing `state` (`None`: nothing) in every view."""
        shared = self.shared
        updates = {
            shared.state: state,
            shared.output: state.translation.text if state else "",
            shared.payload: payload.translation_payload(state, info) if state else None,
            shared.info: info,
        }
        for view in self.dependents:
            updates.update(view.reset(state))
        return updates

    def open_link(self, request: gr.Request):
        """Page load: `?model=...` picks the model; with `&text=...` (and
        `&decoding=beam&beam=4`) the page opens with that translation."""
        params = dict(request.query_params) if request else {}
        model = params.get("model")
        text = params.get("text", "")
        updates = {self.source: gr.update()}  # Named updates, maybe none.
        shown = model if model in self.translators else self.default
        if shown:  # Whether it is still warming up, as of this visit.
            updates[self.model_info] = self.domain(shown)
        if model in self.translators:
            updates[self.model] = model
            updates.update(self.choose_model(model))
        if not text.strip():
            return updates
        model = model or models.default_model(self.translators)
        decoding = params.get("decoding", "greedy")
        updates[self.source] = text
        if decoding in ("greedy", "beam"):
            updates[self.decoding] = decoding
            updates[self.beam_size] = gr.update(visible=decoding == "beam")
        try:
            beam = self.shared.service.beam_size(decoding, params.get("beam", 4))
            updates.update(self.translate(text, model, decoding, beam))
            if beam > 1:  # The link's beam size reaches the control too.
                updates[self.beam_size] = gr.update(value=beam, visible=True)
        except gr.Error as error:
            gr.Warning(error.message)
        return updates

    # ------------------------------------------------------------ wiring
    def outputs(self):
        shared = self.shared
        components = [shared.state, shared.output, shared.payload, shared.info]
        for view in self.dependents:
            components += view.resets
        return components

    def wire(self, demo, dependents):
        """Connects the events, once every view that depends on it exists."""
        self.dependents = list(dependents)
        inputs = [self.source, self.model, self.decoding, self.beam_size]
        gr.on(
            [self.button.click, self.source.submit],
            self.translate,
            inputs,
            self.outputs(),
            api_visibility="private",
        )
        self.decoding.change(
            lambda d: gr.update(visible=d == "beam"),
            self.decoding,
            self.beam_size,
            api_visibility="private",
        )
        self.model.change(
            self.choose_model,
            self.model,
            [self.model_info, self.examples, self.card],
            api_visibility="private",
        )
        self.examples.click(
            self.use_example, self.examples, self.source, api_visibility="private"
        )
        settings = [self.source, self.model, self.decoding, self.beam_size]
        settings += [self.model_info, self.examples, self.card]
        demo.load(
            self.open_link, None, settings + self.outputs(), api_visibility="private"
        )
        for view in self.dependents:  # Views whose events update every view.
            if hasattr(view, "wire_after"):
                view.wire_after(self)
