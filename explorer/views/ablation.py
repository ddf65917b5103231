"""Head ablation: switch heads off and translate the same input again."""

import html

import gradio as gr

from explorer.service import friendly_errors, user_error
from keras_mha.translator import ATTENTION_KINDS

KIND_LABELS = {
    "encoder": "Encoder self-attention",
    "decoder": "Decoder self-attention",
    "cross": "Cross-attention",
}


def confidence_html(translation):
    """Output pieces as chips coloured by probability (red low, green high)."""
    chips = [
        f'<span class="kmha-chip" title="p = {prob:.4f}" '
        f'style="background:hsla({120 * prob:.0f},70%,50%,0.35)">'
        f"{html.escape(piece)}<small>{prob:.2f}</small></span>"
        for piece, prob in zip(translation.target_tokens, translation.token_probs)
    ]
    return f'<div class="kmha-chips">{"".join(chips)}</div>' if chips else ""


class AblationView:
    """Checkboxes of every head; the translation with the ticked ones off."""

    def __init__(self, shared):
        self.shared = shared
        gr.Markdown(
            "Tick heads to switch off (their output is zeroed) and translate the "
            "same input again, with the same decoding."
        )
        with gr.Row():
            self.heads = {
                kind: gr.CheckboxGroup(label=label, elem_id=f"ablate-{kind}")
                for kind, label in KIND_LABELS.items()
            }
        self.button = gr.Button(
            "Translate with these heads off", variant="primary", elem_id="ablate"
        )
        with gr.Row():
            self.original = gr.Textbox(
                label="Translation", interactive=False, elem_id="original"
            )
            self.ablated = gr.Textbox(
                label="With heads switched off",
                interactive=False,
                elem_id="ablated",
            )
        self.confidence = gr.HTML()
        self.info = gr.Markdown(elem_id="ablation-info")
        self.resets = [*self.heads.values(), self.original, self.ablated]
        self.resets += [self.confidence, self.info]
        self.button.click(
            self.run,
            [shared.state, *self.heads.values()],
            [self.ablated, self.confidence, self.info],
            api_visibility="private",
        )

    def reset(self, state):
        updates = {self.ablated: "", self.confidence: "", self.info: ""}
        updates[self.original] = state.translation.text if state else ""
        for kind, box in self.heads.items():
            choices = []
            if state:
                num_layers, num_heads = state.translation.attention[kind].shape[:2]
                choices = [
                    (f"L{layer} H{head}", f"{kind}:{layer}:{head}")
                    for layer in range(num_layers)
                    for head in range(num_heads)
                ]
            updates[box] = gr.update(choices=choices, value=[])
        return updates

    @friendly_errors
    def run(self, state, *ticked):
        """Re-translates the last input with the ticked heads switched off."""
        if state is None:
            raise user_error("Translate something first.")
        disabled = {kind: [] for kind in ATTENTION_KINDS}
        for values in ticked:
            for value in values or []:
                kind, layer, head = str(value).split(":")
                disabled[kind].append((int(layer), int(head)))
        request = state.request
        translation, seconds, _ = self.shared.service.translate(
            request.text,
            request.model,
            request.decoding,
            request.beam_size,
            disabled_heads=disabled,
        )
        count = sum(len(heads) for heads in disabled.values())
        return {
            self.ablated: translation.text,
            self.confidence: confidence_html(translation),
            self.info: f"{count} head(s) switched off; translated in {seconds:.2f} s.",
        }
