"""Word alignment drawn in the browser: links between source and target
words for the chosen method or head, with the Pharaoh text to copy."""

import gradio as gr

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
        self.html = browser_view("alignment")
        self.resets = []

    def reset(self, state):
        return {}
