"""Score your own translation: how likely the model finds each piece of it,
what it preferred where it disagrees, and the attention it paid."""

import gradio as gr

from explorer import payload
from explorer.service import TOP_K, friendly_errors, user_error
from explorer.views import browser_view


class ScoreView:
    def __init__(self, shared):
        self.shared = shared
        gr.Markdown(
            "Type a translation of the text above (yours, or another system's): "
            "the model reads it piece by piece and gives each piece its "
            "probability, and the piece it would have chosen where it disagrees."
        )
        with gr.Row():
            self.target = gr.Textbox(
                label="Your translation", elem_id="own-translation", scale=4
            )
            self.button = gr.Button("Score it", variant="primary", elem_id="score")
        self.html = browser_view("score")
        self.resets = [self.html]
        gr.on(
            [self.button.click, self.target.submit],
            self.score,
            [shared.state, self.target],
            [self.html],
            api_visibility="private",
        )

    def reset(self, state):
        return {self.html: None}

    @friendly_errors
    def score(self, state, target):
        """Scores `target` as a translation of the translated text."""
        if state is None:
            raise user_error("Translate something first: your translation is of it.")
        request = state.request
        scored, _ = self.shared.service.score(
            request.text, target, request.model, top_k=TOP_K
        )
        return {
            self.html: payload.score_payload(state.serial, scored, state.translation)
        }
