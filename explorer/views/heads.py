"""Head statistics, drawn in the browser from the translation's payload,
and each head's importance by ablation, measured on request."""

import gradio as gr

from explorer import payload
from explorer.service import friendly_errors, user_error
from explorer.views import browser_view

NOTE = (
    "One row per head. **entropy** (bits): 0 when every query looks at one "
    "key. **max weight**: the mean of each row's largest weight. "
    "**diagonality**: the share of weight near the diagonal. **previous**: "
    "weight on the previous token (self-attention). **to `<s>`/`</s>`** and "
    "**to punctuation**: weight parked on those tokens (attention sinks). "
    "**alignment F1**: agreement of a cross-attention head's own word "
    "alignment with the default alignment. **score drop** (after *Measure "
    "importance*): how much the translation's log-probability falls when "
    "that head alone is switched off, in nats: what the model needs, not "
    "only where it looked. Click a column to sort, a row to open that head."
)


class HeadsView:
    def __init__(self, shared):
        self.shared = shared
        gr.Markdown(NOTE)
        self.button = gr.Button(
            "Measure importance (switch each head off in turn)",
            elem_id="measure-importance",
            size="sm",
        )
        self.html = browser_view("heads")
        self.resets = [self.html]
        self.button.click(
            self.importance, [shared.state], [self.html], api_visibility="private"
        )

    def reset(self, state):
        return {self.html: None}

    @friendly_errors
    def importance(self, state):
        """Scores the translation the views show once per head switched off."""
        if state is None:
            raise user_error("Translate something first: its heads are measured.")
        drops, seconds = self.shared.service.head_importance(
            state.request.text, state.translation.target_tokens, state.request.model
        )
        return {self.html: payload.importance_payload(state.serial, drops, seconds)}
