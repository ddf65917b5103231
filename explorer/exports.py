"""Downloads made on demand: the attention tensors (`.npz`, `.json`) and a
head's figure (`.png`, `.svg`, drawn by `keras_mha.plots`).

Files go to a temporary folder of their own; folders older than an hour are
removed when the next one is made (Gradio serves its own copies and cleans
them with `delete_cache`).
"""

import atexit
import contextlib
import io
import json
import pathlib
import shutil
import tempfile
import time
import warnings

import numpy as np

from keras_mha import plots
from keras_mha.tokens import merge_labels, merge_pieces, word_groups

FORMATS = ("npz", "json", "png", "svg")
KIND_NAMES = {
    "cross": "cross-attention",
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
}
_ROOT = None


def export_root():
    """The app's export folder, made on first use and removed at exit."""
    global _ROOT
    if _ROOT is None:
        _ROOT = pathlib.Path(tempfile.mkdtemp(prefix="keras-mha-app-"))
        atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
    return _ROOT


def new_folder(max_age_seconds=3600):
    """A fresh folder in `export_root()`, after pruning the old ones."""
    root = export_root()
    for old in root.iterdir():
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > max_age_seconds:
                shutil.rmtree(old)
    return pathlib.Path(tempfile.mkdtemp(dir=root))


def head_view(translation, kind, merge):
    """`(attention (N, H, rows, cols), row labels, column labels)`."""
    attention = np.asarray(translation.attention[kind])
    rows = translation.source_tokens if kind == "encoder" else translation.target_tokens
    cols = (
        translation.decoder_input_tokens
        if kind == "decoder"
        else translation.source_tokens
    )
    if merge:
        row_groups, col_groups = word_groups(rows), word_groups(cols)
        attention = merge_pieces(attention, row_groups, col_groups)
        rows = merge_labels(rows, row_groups)
        cols = merge_labels(cols, col_groups)
    return attention, list(rows), list(cols)


def tensors_json(translation):
    return json.dumps(
        {
            "text": translation.text,
            "source_tokens": translation.source_tokens,
            "target_tokens": translation.target_tokens,
            "decoder_input_tokens": translation.decoder_input_tokens,
            "token_probs": translation.token_probs,
            "attention": {
                k: np.round(v, 4).tolist() for k, v in translation.attention.items()
            },
        },
        ensure_ascii=False,
    )


def export(translation, fmt, kind="cross", layer=0, head=0, merge=False, shared=True):
    """Writes one download and returns its path.

    Args:
        translation: a `keras_mha.Translation` with attention.
        fmt: one of `FORMATS`; `npz` and `json` hold every head, `png` and
            `svg` the figure of `kind`, `layer`, `head`.
        merge: figure with subword pieces merged into words.
        shared: figure on the colour scale of all heads of `kind`.

    Raises:
        ValueError: for an unknown format or kind, or a head that does not
            exist.
    """
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}: one of {', '.join(FORMATS)}.")
    folder = new_folder()
    if fmt == "npz":
        path = folder / "attention.npz"
        np.savez_compressed(path, **translation.to_npz_dict())
        return path
    if fmt == "json":
        path = folder / "attention.json"
        path.write_text(tensors_json(translation), encoding="utf-8")
        return path
    if kind not in KIND_NAMES:
        raise ValueError(f"Unknown kind {kind!r}: one of {', '.join(KIND_NAMES)}.")
    attention, rows, cols = head_view(translation, kind, merge)
    num_layers, num_heads = attention.shape[:2]
    if not (0 <= layer < num_layers and 0 <= head < num_heads):
        raise ValueError(
            f"Layer {layer}, head {head} does not exist: the model has "
            f"{num_layers} layers of {num_heads} heads."
        )
    vmax = float(attention.max()) if shared and attention.size else None
    figure = plots.head_heatmap(
        attention[layer, head],
        rows,
        cols,
        f"{KIND_NAMES[kind]}, layer {layer}, head {head}",
        vmax=vmax,
    )
    path = folder / f"{kind}_layer{layer}_head{head}.{fmt}"
    if fmt == "png":
        path.write_bytes(plots.figure_to_png_bytes(figure))
    else:
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Glyphs fonts lack.
            figure.savefig(buffer, format="svg")
        path.write_bytes(buffer.getvalue())
    return path
