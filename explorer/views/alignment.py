"""Word alignment drawn in the browser: links between source and target
words for the chosen method or head, with the Pharaoh text to copy."""

import gradio as gr

from explorer.views import browser_view


class AlignmentView:
    def __init__(self, shared):
        gr.Markdown(
            "Which source word each target word comes from, read off the "
            "cross-attention. `shift-att` uses the attention of the step after "
            "a word is produced (usually better than `average`); a single "
            "layer or head shows what that part of the model links. Pharaoh "
            "format: `i-j` links source word *i* to target word *j*."
        )
        self.html = browser_view("alignment")
        self.resets = []

    def reset(self, state):
        return {}
