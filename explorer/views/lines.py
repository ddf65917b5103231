"""Token lines, as bertviz's head view: queries on the left, keys on the
right, one line per weight, one colour per head (drawn in the browser)."""

import gradio as gr

from explorer.views import browser_view


class LinesView:
    def __init__(self, shared):
        gr.Markdown(
            "Each line joins a query (left) to a key (right); the stronger the "
            "weight, the darker the line. One colour per head: click a head's "
            "colour to show or hide it, hover a token to see only its lines."
        )
        self.html = browser_view("lines")
        self.resets = []

    def reset(self, state):
        return {}
