"""Word alignment drawn in the browser: links between source and target
words for the chosen method or head, with the Pharaoh text to copy."""

import gradio as gr

from explorer import payload
from explorer.service import friendly_errors, user_error
from explorer.views import browser_view


class AlignmentView:
    def __init__(self, shared):
        gr.Markdown(
            "Which source word each target word comes from. `deletion` asks "
            "the model: the source is scored again without each of its words, "
            "and each target word is linked to the word whose removal makes it "
            "least likely (the method closest to human links). The others read "
            "the cross-attention: "
            "`average` links each target word to the source "
            "word it attends to most; `+union` adds, for each source word, the "
            "target word attending to it most; `+inter` keeps links found both "
            "ways; `+diag` first favours links near the diagonal (the usual "
            "word order, as fast_align does); `shift-att` reads the step after "
            "a word is produced; a "
            "single layer or head shows what that part of the model links. "
            "AER (alignment error rate, lower is better) is measured against "
            "human word links where the language pair has them. Pharaoh "
            "format: `i-j` links source word *i* to target word *j*."
        )
        self.shared = shared
        # The word-deletion methods' links are asked ("delete") only when the
        # view shows one of them: they cost the model a pass per source word.
        self.html = browser_view("alignment", events=["delete"])
        self.resets = [self.html]
        self.html.delete(
            self.delete, [shared.state], [self.html], api_visibility="private"
        )

    def reset(self, state):
        return {self.html: None}

    @friendly_errors
    def delete(self, state):
        """The word-deletion methods' links of the translation shown."""
        if state is None:
            raise user_error("Translate something first.")
        translation = state.translation
        deletion = self.shared.service.word_deletion(translation, state.request.model)
        return {self.html: payload.deletion_links(state.serial, translation, deletion)}
