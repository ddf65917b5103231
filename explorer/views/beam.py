"""The beam: the search tree of a beam search (kept, dropped and finished
hypotheses with their scores); pick a hypothesis to explore it."""

import gradio as gr

from explorer import payload
from explorer.service import friendly_errors, user_error
from explorer.views import browser_view, event_value


class BeamView:
    def __init__(self, shared):
        self.shared = shared
        gr.Markdown(
            "Choose **beam search** above and translate: each column is a step, "
            "each node a hypothesis the search kept after it, with its score. "
            "Grey branches were dropped; the highlighted ones end in the listed "
            "hypotheses. Click a hypothesis to show it in every view."
        )
        self.html = browser_view("beam", events=["pick"])
        self.resets = []
        self.translate = None

    def reset(self, state):
        return {}

    def wire_after(self, translate):
        """Connects `pick` once the Translate view knows every view: a picked
        hypothesis resets the views that show results of the old one (what
        if, score, ablation, attribution), as a new translation does."""
        self.translate = translate
        self.html.pick(
            self.pick, self.shared.state, translate.outputs(), api_visibility="private"
        )

    @friendly_errors
    def pick(self, state, event: gr.EventData):
        """Shows hypothesis `index` of the beam in every view."""
        if state is None:
            raise user_error("Translate something first.")
        try:
            state = state.show(int(event_value(event, "index")))
        except (TypeError, ValueError, IndexError) as error:
            raise user_error(f"No such hypothesis: {error}") from None
        translation = state.translation
        info = (
            f"Showing hypothesis {state.shown + 1} of {len(state.hypotheses)} of "
            f"the beam: log-probability {payload.log_prob(translation):.2f}, "
            f"beam score {translation.score:.2f}."
        )
        if self.translate is not None:
            return self.translate.show(state, info)
        return {
            self.shared.state: state,
            self.shared.payload: payload.translation_payload(state, info),
            self.shared.output: translation.text,
            self.shared.info: info,
        }
