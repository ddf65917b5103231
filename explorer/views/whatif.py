"""What if: force the translation to start differently (a candidate of the
step view, or typed text) and compare with the original."""

import gradio as gr

from explorer import payload
from explorer.service import TOP_K, friendly_errors, user_error
from explorer.views import browser_view, event_value
from keras_mha.tokens import EOS


class WhatIfView:
    """The comparison (drawn by the `whatif` renderer) and a prefix field.

    Args:
        shared: the demo's `Shared`.
        steps: the `StepsView` whose candidate clicks this view answers.
    """

    def __init__(self, shared, steps):
        self.shared = shared
        with gr.Row():
            self.prefix = gr.Textbox(
                label="Or type how the translation should start",
                placeholder="e.g. the first words of another translation",
                elem_id="prefix",
                scale=4,
            )
            self.button = gr.Button(
                "Continue from there", elem_id="prefix-button", scale=1
            )
        self.html = browser_view("whatif")
        self.resets = [self.html, self.prefix]
        outputs = [self.html, self.prefix]
        steps.html.whatif(
            self.from_candidate, shared.state, outputs, api_visibility="private"
        )
        gr.on(
            [self.button.click, self.prefix.submit],
            self.from_prefix,
            [shared.state, self.prefix],
            outputs,
            api_visibility="private",
        )

    def reset(self, state):
        return {self.html: None, self.prefix: ""}

    def compare(self, state, prefix, step, piece):
        """The comparison payload for the translation forced to `prefix`."""
        request = state.request
        service = self.shared.service
        if isinstance(prefix, list) and prefix[-1] == EOS:
            # Ending here: nothing is left to decode, so score that output.
            forced, _ = service.score(request.text, prefix, request.model)
            forced.prefix_length = len(prefix)
        else:
            forced = service.translate(
                request.text,
                request.model,
                request.decoding,
                request.beam_size,
                top_k=TOP_K,
                prefix=prefix,
            ).translation
        return payload.whatif_payload(
            state.serial, state.translation, forced, step, piece
        )

    @friendly_errors
    def from_candidate(self, state, event: gr.EventData):
        """A candidate clicked at step `t`: the output up to `t`, then it."""
        if state is None:
            raise user_error("Translate something first.")
        pieces = state.translation.target_tokens
        try:
            step = int(event_value(event, "step"))
        except (TypeError, ValueError):
            raise user_error(f"Unknown step {event_value(event, 'step')!r}.") from None
        if not 0 <= step < len(pieces):
            raise user_error(
                f"Step {step} does not exist: the translation has {len(pieces)} pieces."
            )
        piece = str(event_value(event, "piece", ""))
        if not piece:
            raise user_error("No candidate piece was given.")
        prefix = [*pieces[:step], piece]
        return {
            self.html: self.compare(state, prefix, step, piece),
            self.prefix: "",
        }

    @friendly_errors
    def from_prefix(self, state, prefix):
        """The prefix field: the translation forced to start with that text."""
        if state is None:
            raise user_error("Translate something first.")
        if not str(prefix or "").strip():
            raise user_error("Type the start of a translation first.")
        return {self.html: self.compare(state, str(prefix), -1, str(prefix))}
