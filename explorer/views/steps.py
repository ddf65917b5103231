"""Step-by-step playback: at each output step, the output so far, the top
candidates for the next piece, and every head's attention for that step."""

import gradio as gr

from explorer.views import browser_view


class StepsView:
    """Drawn in the browser; a click on a candidate sends `whatif`, which
    `WhatIfView` answers."""

    def __init__(self, shared):
        gr.Markdown(
            "Move the slider or press ▶ to replay the translation one piece at a "
            "time. Click a candidate to make the model continue from it instead."
        )
        self.html = browser_view("steps", events=["whatif"])
        self.resets = []

    def reset(self, state):
        return {}
