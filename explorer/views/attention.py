"""Attention heatmaps drawn in the browser: one head large, all heads of a
layer, all layers × heads; hover for the exact weight, click a token to
follow its row or column. Downloads of the tensors and the head's figure."""

import gradio as gr

from explorer import exports
from explorer.service import friendly_errors, user_error
from explorer.views import browser_view, event_value

NOTE = (
    "**How to read this.** Each heatmap is one attention head: row *t* shows "
    "how a query token spread its attention over the key tokens (each row sums "
    "to 1). Attention weights show *where* a head looked, not *why* the model "
    "chose a word: the values a head mixes, the other heads, the feed-forward "
    "layers and the residual stream all shape the output. Switching heads off "
    "(the *Head ablation* tab) tests more directly what a head does."
)


class AttentionView:
    """The heatmaps (drawn by the `attention` renderer) and the downloads."""

    def __init__(self, shared):
        self.shared = shared
        gr.Markdown(NOTE)
        self.html = browser_view("attention", events=["export"])
        self.file = gr.File(
            label="Download",
            interactive=False,
            visible=False,
            elem_id="export-file",
        )
        self.resets = [self.file]
        self.html.export(self.export, shared.state, self.file, api_visibility="private")

    def reset(self, state):
        return {self.file: gr.update(value=None, visible=False)}

    @friendly_errors
    def export(self, state, event: gr.EventData):
        """A download button of the renderer: writes the file asked for."""
        if state is None:
            raise user_error("Translate something first.")
        try:
            path = exports.export(
                state.translation,
                str(event_value(event, "format", "")),
                kind=str(event_value(event, "kind", "cross")),
                layer=int(event_value(event, "layer", 0)),
                head=int(event_value(event, "head", 0)),
                merge=bool(event_value(event, "merge", False)),
                shared=bool(event_value(event, "shared", True)),
            )
        except (TypeError, ValueError) as error:
            raise user_error(error) from error
        return {self.file: gr.update(value=str(path), visible=True)}
