"""How a head works: one row of one head's attention, stage by stage, from
the model's own layers (`keras_mha.head_trace`), drawn in the browser."""

import gradio as gr

from explorer import payload
from explorer.service import friendly_errors, user_error
from explorer.views import browser_view, event_value


class HeadView:
    def __init__(self, shared):
        self.shared = shared
        gr.Markdown(
            "Where one row of attention weights comes from. Pick the kind, "
            "layer, head and query piece: each stage shows its formula, its "
            "shape in this model's sizes and its numbers (hover one to see how "
            "it was computed), from the query's vector to the softmax row the "
            "attention views draw, and on to the head's output, W_O and the "
            "residual."
        )
        self.html = browser_view("head", events=["trace"])
        self.resets = [self.html]
        self.html.trace(
            self.trace, [shared.state], [self.html], api_visibility="private"
        )

    def reset(self, state):
        return {self.html: None}

    @friendly_errors
    def trace(self, state, event: gr.EventData):
        """The stages of the head, layer, kind and query the renderer asks."""
        if state is None:
            raise user_error("Translate something first.")
        kind = str(event_value(event, "kind", "cross"))
        request = state.request
        stages, translation, seconds = self.shared.service.head(
            request.text,
            state.translation.target_tokens,
            request.model,
            kind,
            event_value(event, "layer", 0),
            event_value(event, "head", 0),
            event_value(event, "query", 0),
        )
        value = payload.head_payload(
            state.serial,
            stages,
            translation,
            kind,
            int(event_value(event, "layer", 0)),
            int(event_value(event, "head", 0)),
            int(event_value(event, "query", 0)),
        )
        value["seconds"] = round(seconds, 3)
        return {self.html: value}
