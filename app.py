"""Watch a Transformer translate: translation, every attention head, ablation.

Run `python app.py` and open http://127.0.0.1:7860. Models are the folders
of `saved_models/` (or of `$KERAS_MHA_MODELS_DIR`) that hold a `model.keras`.
Figures come from `keras_mha.plots`; this file only wires them to Gradio.
"""

import atexit
import contextlib
import functools
import html
import json
import logging
import os
import pathlib
import shutil
import tempfile
import threading
import time
import warnings

import gradio as gr
import numpy as np
import pandas as pd

from keras_mha import Translator, plots
from keras_mha.translator import ATTENTION_KINDS

logger = logging.getLogger("keras_mha.app")
# Tokens in scripts the plot fonts lack (CJK, emoji) are drawn as boxes.
warnings.filterwarnings("ignore", message="Glyph .* missing from font")

MODELS_DIR = pathlib.Path(os.environ.get("KERAS_MHA_MODELS_DIR", "saved_models"))
# Longer inputs are cut before tokenizing; the model keeps fewer pieces anyway.
MAX_INPUT_CHARS = 10_000
MAX_BEAM_SIZE = 8
LANGUAGES = {"de": "German", "en": "English", "es": "Spanish", "fr": "French"}
KIND_CHOICES = [
    ("cross-attention (target → source)", "cross"),
    ("encoder self-attention", "encoder"),
    ("decoder self-attention", "decoder"),
]
EXAMPLES = {
    "en": [
        "The cat is sleeping on the sofa.",
        "Where is the train station?",
        "I would like a cup of coffee, please.",
        "She has lived in this city for ten years.",
        "We didn't know that the museum was closed on Mondays.",
    ],
    "es": ["¿Dónde está la estación de tren?", "Me gustaría un café, por favor."],
    "de": ["Wo ist der Bahnhof?", "Ich hätte gern einen Kaffee, bitte."],
}
ATTENTION_NOTE = (
    "**How to read this.** Each heatmap is one attention head: row *t* shows "
    "how a query token spread its attention over the key tokens (each row sums "
    "to 1). Attention weights show *where* a head looked, not *why* the model "
    "chose a word: the values a head mixes, the other heads, the feed-forward "
    "layers and the residual stream all shape the output. Switching heads off "
    "(the *Head ablation* tab) tests more directly what a head does."
)


# ---------------------------------------------------------------- models
def load_models(models_dir):
    """Loads each sub-folder holding a `model.keras`.

    Returns:
        `({name: Translator}, {name: reason})`: the loaded models and the
        folders that failed, so that one broken folder never stops the app.
    """
    models_dir = pathlib.Path(models_dir)
    folders = (
        sorted(p for p in models_dir.iterdir() if (p / "model.keras").is_file())
        if models_dir.is_dir()
        else []
    )
    translators, failures = {}, {}
    for folder in folders:
        try:
            translators[folder.name] = Translator.load(folder)
        except Exception as error:  # Any broken file: report it, keep going.
            logger.exception("Could not load the model in %s", folder)
            failures[folder.name] = f"{type(error).__name__}: {error}"
    return translators, failures


def model_label(translator):
    """Dropdown label, e.g. "English → Spanish (en-es, BLEU 35.1)"."""
    card = translator.card
    languages = card.get("languages") or []
    details = [translator.name]
    evaluations = sorted(
        (card.get("evaluation") or {}).values(),
        key=lambda e: (e.get("split") == "test", e.get("beam_size", 1)),
    )
    if evaluations and "bleu" in evaluations[-1]:
        details.append(f"BLEU {float(evaluations[-1]['bleu']):.1f}")
    if len(languages) == 2:
        source, target = (LANGUAGES.get(code, code) for code in languages)
        return f"{source} → {target} ({', '.join(details)})"
    return f"{translator.name} ({', '.join(details[1:]) or 'no card'})"


def model_card(name):
    path = MODELS_DIR / str(name) / "model_card.md"
    if name in TRANSLATORS and path.is_file():
        return path.read_text(encoding="utf-8")
    return "No model card."


TRANSLATORS, FAILURES = load_models(MODELS_DIR)
# One translation per model at a time: decoding is CPU/GPU-bound anyway and
# the translator's compiled-search cache is not built for concurrent writers.
LOCKS = {name: threading.Lock() for name in TRANSLATORS}
MODEL_CHOICES = [(model_label(t), name) for name, t in TRANSLATORS.items()]
EXPORT_DIR = pathlib.Path(tempfile.mkdtemp(prefix="keras-mha-app-"))
atexit.register(shutil.rmtree, EXPORT_DIR, ignore_errors=True)


# ---------------------------------------------------------------- helpers
def friendly_errors(fn):
    """Turns unexpected exceptions into a short message (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:
            logger.exception("%s failed", fn.__name__)
            raise gr.Error(
                html.escape(f"Sorry, that did not work ({type(error).__name__}).")
            ) from error

    return wrapper


def translate_text(text, model, decoding="greedy", beam_size=4, disabled_heads=None):
    """Returns `(Translation, seconds, beam)`; raises `gr.Error` on bad input."""
    if model not in TRANSLATORS:
        available = ", ".join(TRANSLATORS) or "none loaded"
        raise gr.Error(
            html.escape(f"Unknown model {model!r} (available: {available}).")
        )
    if decoding not in ("greedy", "beam"):
        raise gr.Error(html.escape(f"Unknown decoding {decoding!r}: greedy or beam."))
    text = str(text or "")
    beam = 1 if decoding == "greedy" else int(np.clip(int(beam_size), 1, MAX_BEAM_SIZE))
    start = time.perf_counter()
    with LOCKS[model]:
        translation = TRANSLATORS[model].translate(
            text[:MAX_INPUT_CHARS], beam_size=beam, disabled_heads=disabled_heads
        )
    translation.truncated |= len(text) > MAX_INPUT_CHARS
    return translation, time.perf_counter() - start, beam


def summary(translation, seconds, model, beam):
    """JSON-able facts about a translation (the `/translate` stats)."""
    if not translation.source_tokens:
        message = "Empty input: type a sentence to translate."
    elif translation.truncated:
        message = "The input was too long: only its beginning was translated."
    else:
        message = ""
    return {
        "model": model,
        "decoding": "greedy" if beam == 1 else f"beam search, beam {beam}",
        "seconds": round(seconds, 3),
        "truncated": translation.truncated,
        "message": message,
        "score": round(translation.score, 4),
        "source_tokens": translation.source_tokens,
        "target_tokens": translation.target_tokens,
        "token_probs": [round(p, 4) for p in translation.token_probs],
    }


def confidence_html(translation):
    """Output pieces as chips coloured by probability (red low, green high)."""
    chips = []
    for piece, prob in zip(translation.target_tokens, translation.token_probs):
        chips.append(
            f'<span title="p = {prob:.4f}" style="display:inline-block;'
            f"margin:2px;padding:2px 6px;border-radius:6px;text-align:center;"
            f"background:hsla({120 * prob:.0f},70%,50%,0.35);"
            f'font-family:monospace">{html.escape(piece)}<br>'
            f"<small>{prob:.2f}</small></span>"
        )
    if not chips:
        return ""
    caption = (
        '<div style="font-size:0.85em;opacity:0.7">Probability of each output '
        "piece (hover for the exact value)</div>"
    )
    return f"{caption}<div>{''.join(chips)}</div>"


def attention_view(state, kind, merge):
    """`(attention (N, H, T, S), row labels, column labels)` of one kind."""
    translation = state["translation"]
    attention = translation.attention[kind]
    rows = translation.source_tokens if kind == "encoder" else translation.target_tokens
    cols = {
        "encoder": translation.source_tokens,
        "decoder": translation.decoder_input_tokens,
        "cross": translation.source_tokens,
    }[kind]
    if merge:
        row_groups, col_groups = plots.word_groups(rows), plots.word_groups(cols)
        attention = plots.merge_pieces(attention, row_groups, col_groups)
        rows = plots.merge_labels(rows, row_groups)
        cols = plots.merge_labels(cols, col_groups)
    return attention, rows, cols


def export_folder(max_age_seconds=3600):
    """A fresh folder in `EXPORT_DIR`; folders older than an hour are removed
    (Gradio serves its own copies, which `delete_cache` cleans)."""
    for old in EXPORT_DIR.iterdir():
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > max_age_seconds:
                shutil.rmtree(old)
    return pathlib.Path(tempfile.mkdtemp(dir=EXPORT_DIR))


def export_attention(translation):
    """Writes the tensors as `.npz` and `.json` into a fresh temp folder."""
    folder = export_folder()
    np.savez_compressed(folder / "attention.npz", **translation.to_npz_dict())
    data = {
        "text": translation.text,
        "source_tokens": translation.source_tokens,
        "target_tokens": translation.target_tokens,
        "decoder_input_tokens": translation.decoder_input_tokens,
        "token_probs": translation.token_probs,
        "attention": {
            k: np.round(v, 4).tolist() for k, v in translation.attention.items()
        },
    }
    (folder / "attention.json").write_text(json.dumps(data, ensure_ascii=False))
    return [str(folder / "attention.npz"), str(folder / "attention.json")]


def _indices(value, size):
    return int(np.clip(int(value or 0), 0, max(size - 1, 0)))


# ---------------------------------------------------------------- handlers
@friendly_errors
def run_translation(text, model, decoding, beam_size):
    """Translate button: text, confidence, facts, state, ablation choices."""
    translation, seconds, beam = translate_text(text, model, decoding, beam_size)
    facts = summary(translation, seconds, model, beam)
    if not translation.source_tokens:
        gr.Warning(facts["message"])
        empty = gr.update(choices=[], value=[])
        return "", "", facts["message"], None, empty, empty, empty, "", "", ""
    if translation.truncated:
        gr.Warning(facts["message"])
    info = (
        f"{'⚠️ ' + facts['message'] + ' ' if facts['message'] else ''}"
        f"Translated in **{seconds:.2f} s** with {facts['decoding']}: "
        f"{len(translation.source_tokens)} source pieces → "
        f"{len(translation.target_tokens)} output pieces, "
        f"log-probability {translation.score:.2f}."
    )
    state = {
        "translation": translation,
        "text": text,
        "model": model,
        "decoding": decoding,
        "beam_size": beam_size,
        "files": export_attention(translation),
    }
    shape = {k: v.shape[:2] for k, v in translation.attention.items()}
    ablation = [
        gr.update(
            choices=[
                (f"L{layer} H{head}", f"{kind}:{layer}:{head}")
                for layer in range(shape[kind][0])
                for head in range(shape[kind][1])
            ],
            value=[],
        )
        for kind in ATTENTION_KINDS
    ]
    conf = confidence_html(translation)
    return (translation.text, conf, info, state, *ablation, translation.text, "", "")


@friendly_errors
def show_attention(state, kind, layer, head, merge, shared, parts="all"):
    """Explorer figures: one head, its layer, the whole model, statistics."""
    if not state:
        return gr.update(), gr.update(), None, None, None, None, None
    attention, rows, cols = attention_view(state, kind, merge)
    num_layers, num_heads = attention.shape[:2]
    layer, head = _indices(layer, num_layers), _indices(head, num_heads)
    name = dict((v, k) for k, v in KIND_CHOICES)[kind]
    vmax = float(attention.max()) if shared and attention.size else None
    head_fig = plots.head_heatmap(
        attention[layer, head],
        rows,
        cols,
        f"{name}, layer {layer}, head {head}",
        vmax=vmax,
    )
    png = export_folder() / f"{kind}_layer{layer}_head{head}.png"
    png.write_bytes(plots.figure_to_png_bytes(head_fig))
    # An hour-old translation's exports may have been pruned.
    files = [f for f in state["files"] if os.path.exists(f)] + [str(png)]
    if parts == "head":
        return (
            gr.update(),
            gr.update(),
            head_fig,
            gr.update(),
            gr.update(),
            gr.update(),
            files,
        )
    layer_fig = plots.layer_grid(
        attention[layer], rows, cols, f"{name}, layer {layer}", shared_scale=shared
    )
    if parts == "layer":
        return (
            gr.update(),
            gr.update(),
            head_fig,
            layer_fig,
            gr.update(),
            gr.update(),
            files,
        )
    overview = plots.model_overview(attention, f"{name}: all layers × heads", shared)
    stats = pd.DataFrame(plots.head_statistics(attention)).round(3)
    return (
        gr.update(choices=list(range(num_layers)), value=layer),
        gr.update(choices=list(range(num_heads)), value=head),
        head_fig,
        layer_fig,
        overview,
        stats,
        files,
    )


@friendly_errors
def run_ablation(state, encoder, decoder, cross):
    """Re-translates the last input with the ticked heads switched off."""
    if not state:
        raise gr.Error("Translate something first.")
    disabled = {kind: [] for kind in ATTENTION_KINDS}
    for value in [*(encoder or []), *(decoder or []), *(cross or [])]:
        kind, layer, head = str(value).split(":")
        disabled[kind].append((int(layer), int(head)))
    translation, seconds, _ = translate_text(
        state["text"], state["model"], state["decoding"], state["beam_size"], disabled
    )
    count = sum(len(v) for v in disabled.values())
    return (
        translation.text,
        confidence_html(translation),
        (f"{count} head(s) switched off; translated in {seconds:.2f} s."),
    )


@friendly_errors
def api_translate(
    text: str, model: str, decoding: str = "greedy", beam_size: int = 4
) -> tuple[str, dict]:
    """Translates `text` with `model` (a model folder name, e.g. "en-es").

    Returns the translation and a dict of facts: decoding, seconds, the
    source and output pieces, each output piece's probability, truncation,
    and a message (e.g. for empty input).
    """
    translation, seconds, beam = translate_text(text, model, decoding, beam_size)
    return translation.text, summary(translation, seconds, model, beam)


@friendly_errors
def api_attention(
    text: str, model: str, kind: str = "cross", layer: int = 0, head: int = 0
) -> dict:
    """Greedy-translates `text`; returns one head's attention matrix.

    `kind` is "encoder", "decoder" or "cross". The dict has the translation,
    `row_tokens` (queries), `column_tokens` (keys) and `attention`, a list
    of rows that each sum to 1.
    """
    if kind not in ATTENTION_KINDS:
        raise gr.Error(html.escape(f"Unknown kind {kind!r}: one of {ATTENTION_KINDS}."))
    translation, _, _ = translate_text(text, model)
    attention, rows, cols = attention_view({"translation": translation}, kind, False)
    num_layers, num_heads = attention.shape[:2]
    if not (0 <= int(layer) < num_layers and 0 <= int(head) < num_heads):
        raise gr.Error(
            f"Layer {int(layer)}, head {int(head)} does not exist: the model has "
            f"{num_layers} layers of {num_heads} heads."
        )
    return {
        "translation": translation.text,
        "kind": kind,
        "layer": int(layer),
        "head": int(head),
        "row_tokens": rows,
        "column_tokens": cols,
        "attention": np.round(attention[int(layer), int(head)], 5).tolist(),
    }


# ---------------------------------------------------------------- layout
with gr.Blocks(
    title="Watch a Transformer translate", delete_cache=(1800, 3600)
) as demo:
    gr.Markdown(
        "# Watch a Transformer translate\n"
        "An encoder–decoder Transformer written from scratch in Keras 3 "
        "(`keras_mha`). Translate a sentence, then look at every attention "
        "head, or switch heads off and see what changes."
    )
    if FAILURES or not TRANSLATORS:
        lines = [f"- `{html.escape(n)}`: {html.escape(r)}" for n, r in FAILURES.items()]
        gr.Markdown(
            "**Some models could not be loaded.**\n" + "\n".join(lines)
            if FAILURES
            else f"**No models found in `{html.escape(str(MODELS_DIR))}`.**"
        )
    state = gr.State(None)
    with gr.Row():
        with gr.Column():
            source = gr.Textbox(
                label="Text to translate",
                lines=3,
                max_length=MAX_INPUT_CHARS,
                placeholder="Type a sentence…",
                elem_id="source",
            )
            model = gr.Dropdown(
                MODEL_CHOICES,
                value=MODEL_CHOICES[0][1] if MODEL_CHOICES else None,
                label="Language pair",
            )
            with gr.Row():
                decoding = gr.Radio(
                    [("greedy", "greedy"), ("beam search", "beam")],
                    value="greedy",
                    label="Decoding",
                )
                beam_size = gr.Slider(
                    2, MAX_BEAM_SIZE, value=4, step=1, label="Beam size", visible=False
                )
            translate_button = gr.Button(
                "Translate", variant="primary", elem_id="translate"
            )
        with gr.Column():
            output = gr.Textbox(
                label="Translation", lines=3, interactive=False, elem_id="translation"
            )
            confidence = gr.HTML(label="Probability of each output piece")
            info = gr.Markdown(elem_id="translation-info")
    if MODEL_CHOICES:
        gr.Examples(
            [
                [sentence, name]
                for name, translator in TRANSLATORS.items()
                for sentence in EXAMPLES.get(
                    (translator.card.get("languages") or ["en"])[0], []
                )
            ],
            inputs=[source, model],
        )

    with gr.Tab("Attention explorer"):
        gr.Markdown(ATTENTION_NOTE)
        with gr.Row():
            kind = gr.Radio(KIND_CHOICES, value="cross", label="Attention")
            layer = gr.Radio([0], value=0, label="Layer")
            head = gr.Radio([0], value=0, label="Head")
        with gr.Row():
            merge = gr.Checkbox(label="Merge subword pieces into words")
            shared = gr.Checkbox(value=True, label="Shared colour scale")
        head_plot = gr.Plot(label="One head", format="png", elem_id="head-plot")
        layer_plot = gr.Plot(label="All heads of this layer", format="png")
        overview_plot = gr.Plot(label="All layers × heads", format="png")
        stats = gr.Dataframe(
            label="Head statistics (entropy in bits; sort by a column to find heads)",
            interactive=False,
        )
        files = gr.File(
            label="Download: attention tensors (npz, json) and the head figure (png)",
            file_count="multiple",
            interactive=False,
        )

    with gr.Tab("Head ablation"):
        gr.Markdown(
            "Tick heads to switch off (their output is zeroed) and translate the "
            "same input again."
        )
        with gr.Row():
            ablate = {
                name: gr.CheckboxGroup(label=label, elem_id=f"ablate-{name}")
                for name, label in [
                    ("encoder", "Encoder self-attention"),
                    ("decoder", "Decoder self-attention"),
                    ("cross", "Cross-attention"),
                ]
            }
        ablate_button = gr.Button(
            "Translate with these heads off", variant="primary", elem_id="ablate"
        )
        with gr.Row():
            original = gr.Textbox(
                label="Original translation", interactive=False, elem_id="original"
            )
            ablated = gr.Textbox(label="With heads switched off", interactive=False)
        ablated_confidence = gr.HTML()
        ablated_info = gr.Markdown(elem_id="ablation-info")

    with gr.Accordion("Model card", open=False):
        card = gr.Markdown(model_card(model.value))

    # ------------------------------------------------------------ events
    explorer_inputs = [state, kind, layer, head, merge, shared]
    explorer_outputs = [layer, head, head_plot, layer_plot, overview_plot, stats, files]
    ablation_inputs = [ablate[k] for k in ATTENTION_KINDS]
    gr.on(
        [translate_button.click, source.submit],
        run_translation,
        [source, model, decoding, beam_size],
        [output, confidence, info, state, *ablation_inputs, original, ablated]
        + [ablated_confidence],
        api_visibility="private",
    ).success(
        show_attention, explorer_inputs, explorer_outputs, api_visibility="private"
    )
    gr.on(
        [kind.input, merge.input, shared.input],
        show_attention,
        explorer_inputs,
        explorer_outputs,
        api_visibility="private",
    )
    layer.input(
        functools.partial(show_attention, parts="layer"),
        explorer_inputs,
        explorer_outputs,
        api_visibility="private",
    )
    head.input(
        functools.partial(show_attention, parts="head"),
        explorer_inputs,
        explorer_outputs,
        api_visibility="private",
    )
    ablate_button.click(
        run_ablation,
        [state, *ablation_inputs],
        [ablated, ablated_confidence, ablated_info],
        api_visibility="private",
    )
    decoding.change(
        lambda d: gr.update(visible=d == "beam"),
        decoding,
        beam_size,
        api_visibility="private",
    )
    model.change(model_card, model, card, api_visibility="private")
    gr.api(api_translate, api_name="translate")
    gr.api(api_attention, api_name="attention")

demo.queue(default_concurrency_limit=4, max_size=64)

if __name__ == "__main__":
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
