"""The beam: the search tree of a beam search (kept, dropped and finished
hypotheses with their scores); pick a hypothesis to explore it."""

import gradio as gr

from explorer import payload
from explorer.service import friendly_errors, user_error
from explorer.views import browser_view, event_data


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
        self.html.pick(
            self.pick,
            shared.state,
            [shared.state, shared.payload, shared.output, shared.info],
            api_visibility="private",
        )

    def reset(self, state):
        return {}

    @friendly_errors
    def pick(self, state, event: gr.EventData):
        """Shows hypothesis `index` of the beam in every view."""
        if state is None:
            raise user_error("Translate something first.")
        data = event_data(event)
        try:
            state = state.show(int(data.get("index")))
        except (TypeError, ValueError, IndexError) as error:
            raise user_error(f"No such hypothesis: {error}") from None
        translation = state.translation
        info = (
            f"Showing hypothesis {state.shown + 1} of {len(state.hypotheses)} of "
            f"the beam: log-probability {payload.log_prob(translation):.2f}, "
            f"beam score {translation.score:.2f}."
        )
        return {
            self.shared.state: state,
            self.shared.payload: payload.translation_payload(state, info),
            self.shared.output: translation.text,
            self.shared.info: info,
        }
