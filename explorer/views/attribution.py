"""Attribution drawn in the browser: for each output piece, how much each
source piece and each earlier output piece contributed to it (gradient x
input or integrated gradients on the embeddings), and the share that came
from the source."""

import gradio as gr

from explorer import payload
from explorer.service import ATTRIBUTION_METHODS, friendly_errors, user_error
from explorer.views import browser_view

LABELS = {
    "integrated_gradients": "integrated gradients (16 steps)",
    "grad_x_input": "gradient × input (fast)",
}


class AttributionView:
    def __init__(self, shared):
        self.shared = shared
        gr.Markdown(
            "Why each piece was chosen, from the gradients rather than the "
            "attention: the contribution of every source piece and every earlier "
            "output piece to the piece's log-probability (absolute values, as "
            "shares of the row). The bar is the share that came from the source; "
            "the rest came from the translation so far."
        )
        with gr.Row():
            self.method = gr.Radio(
                [(LABELS[m], m) for m in ATTRIBUTION_METHODS],
                value=ATTRIBUTION_METHODS[0],
                label="Method",
                elem_id="attribution-method",
                scale=3,
            )
            self.button = gr.Button(
                "Explain the translation", variant="primary", elem_id="attribute"
            )
        self.html = browser_view("attribution")
        self.resets = [self.html]
        self.button.click(
            self.attribute,
            [shared.state, self.method],
            [self.html],
            api_visibility="private",
        )

    def reset(self, state):
        return {self.html: None}

    @friendly_errors
    def attribute(self, state, method):
        """Attributes the translation the views show."""
        if state is None:
            raise user_error("Translate something first: its pieces are explained.")
        found, seconds = self.shared.service.attribute(
            state.request.text,
            state.translation.target_tokens,
            state.request.model,
            method,
        )
        return {self.html: payload.attribution_payload(state.serial, found, seconds)}
