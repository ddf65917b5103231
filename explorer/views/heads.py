"""Head statistics, drawn in the browser from the translation's payload."""

import gradio as gr

from explorer.views import browser_view

NOTE = (
    "One row per head. **entropy** (bits): 0 when every query looks at one "
    "key. **max weight**: the mean of each row's largest weight. "
    "**diagonality**: the share of weight near the diagonal. **previous**: "
    "weight on the previous token (self-attention). **to `<s>`/`</s>`** and "
    "**to punctuation**: weight parked on those tokens (attention sinks). "
    "**alignment F1**: agreement of a cross-attention head's own word "
    "alignment with the default alignment. Click a column to sort, a row to "
    "open that head."
)


class HeadsView:
    def __init__(self, shared):
        gr.Markdown(NOTE)
        self.html = browser_view("heads")
        self.resets = []

    def reset(self, state):
        return {}
