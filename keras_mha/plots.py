"""Attention figures and head statistics (matplotlib only, no Gradio).

Figures are `matplotlib.figure.Figure` objects drawn on an Agg canvas
without `pyplot`, so there is no global figure state: a server can draw
figures in several threads at once, and nothing needs a display.

Shape legend: N layers, H heads, T query (row) tokens, S key (column)
tokens. Rows of an attention matrix are queries and sum to 1.

Example:

```python
translation = translator.translate("How are you?", return_attention=True)
cross = translation.attention["cross"]  # (N, H, T, S)
fig = head_heatmap(
    cross[0, 1], translation.target_tokens, translation.source_tokens,
    title="cross-attention, layer 0, head 1",
)
png = figure_to_png_bytes(fig)
```
"""

import io
import math
import warnings

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_mha.tokens import (  # noqa: F401 (re-exported for the views)
    merge_labels,
    merge_pieces,
    word_groups,
)

CMAP = "viridis"
# Matrices this small get their values written in the cells.
_ANNOTATE_MAX_CELLS = 15


def _new_figure(width, height, dpi=100):
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _label(token):
    # "$" would start matplotlib mathtext; users may type any text.
    return str(token).replace("$", r"\$")


def _font_size(count, base=9.0):
    return max(4.0, min(base, base * 30 / max(count, 1)))


def _scale(matrix, vmin, vmax):
    """Colour limits: the given ones, else 0 to the matrix's own maximum."""
    if vmin is None:
        vmin = 0.0
    if vmax is None:
        vmax = float(np.max(matrix)) if np.size(matrix) else 1.0
    return vmin, max(vmax, vmin + 1e-6)


def _draw(ax, matrix, row_labels, col_labels, vmin, vmax, ticks=True):
    image = ax.imshow(
        matrix,
        cmap=CMAP,
        vmin=vmin,
        vmax=vmax,
        aspect="auto",
        interpolation="nearest",
    )
    if ticks and matrix.size:
        rows, cols = matrix.shape
        ax.set_xticks(range(cols))
        ax.set_xticklabels(
            [_label(t) for t in col_labels],
            rotation=90,
            fontsize=_font_size(cols),
        )
        ax.set_yticks(range(rows))
        ax.set_yticklabels([_label(t) for t in row_labels], fontsize=_font_size(rows))
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    return image


def head_heatmap(
    attention_2d,
    row_labels,
    col_labels,
    title="",
    vmin=None,
    vmax=None,
    ax=None,
    annotate=None,
):
    """One head's attention as a heatmap with the tokens on its axes.

    Args:
        attention_2d: `(T, S)` weights; rows are queries.
        row_labels: T query tokens (y axis).
        col_labels: S key tokens (x axis).
        title: axes title.
        vmin, vmax: colour limits; `None` means 0 and the matrix's own
            maximum (a per-head scale). Pass the same limits to several
            heads for a shared scale.
        ax: draw into these axes; `None` makes a new figure sized to the
            matrix.
        annotate: write the values in the cells; `None` does so for
            matrices of at most 15 x 15.

    Returns:
        The `matplotlib.figure.Figure`, with a colour bar.
    """
    matrix = np.asarray(attention_2d, dtype="float32")
    if matrix.ndim != 2:
        raise ValueError(
            f"`attention_2d` must have shape (T, S). Received: shape={matrix.shape}"
        )
    rows, cols = matrix.shape
    if len(row_labels) != rows or len(col_labels) != cols:
        raise ValueError(
            f"Expected {rows} row labels and {cols} column labels. Received: "
            f"{len(row_labels)} and {len(col_labels)}"
        )
    if ax is None:
        fig = _new_figure(
            min(18.0, max(5.0, 0.32 * cols + 2.5)),
            min(16.0, max(3.5, 0.32 * rows + 1.8)),
        )
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    vmin, vmax = _scale(matrix, vmin, vmax)
    with warnings.catch_warnings():
        # Tokens in scripts the installed fonts lack are drawn as boxes.
        warnings.simplefilter("ignore", UserWarning)
        image = _draw(ax, matrix, row_labels, col_labels, vmin, vmax)
        if annotate is None:
            annotate = max(rows, cols) <= _ANNOTATE_MAX_CELLS
        if annotate:
            middle = (vmin + vmax) / 2
            for (r, c), value in np.ndenumerate(matrix):
                ax.text(
                    c,
                    r,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if value > middle else "white",
                )
    ax.set_title(_label(title), fontsize=11)
    ax.set_xlabel("keys (attended to)")
    ax.set_ylabel("queries")
    fig.colorbar(image, ax=ax, shrink=0.8, label="attention weight")
    return fig


def layer_grid(
    attention_3d,
    row_labels,
    col_labels,
    title="",
    shared_scale=True,
    max_columns=4,
):
    """All heads of one layer, side by side.

    Args:
        attention_3d: `(H, T, S)` weights of one layer.
        row_labels: T query tokens; col_labels: S key tokens. Tick labels
            are drawn when the matrices are at most 24 tokens wide and high.
        title: figure title.
        shared_scale: one colour scale (0 to the layer's maximum) for all
            heads and one colour bar; `False` scales each head to its own
            maximum, with a colour bar each.
        max_columns: heads per row of the grid.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    attention = np.asarray(attention_3d, dtype="float32")
    if attention.ndim != 3:
        raise ValueError(
            f"`attention_3d` must have shape (H, T, S). Received: "
            f"shape={attention.shape}"
        )
    num_heads, rows, cols = attention.shape
    num_columns = min(max_columns, num_heads)
    num_rows = math.ceil(num_heads / num_columns)
    ticks = max(rows, cols) <= 24
    cell = 0.22 if ticks else 0.12
    width = min(20.0, num_columns * max(2.6, cell * cols + (1.4 if ticks else 0.6)))
    height = min(20.0, num_rows * max(2.4, cell * rows + (1.4 if ticks else 0.6)))
    fig = _new_figure(width, height + 0.4)
    axes = fig.subplots(num_rows, num_columns, squeeze=False)
    vmin, vmax = _scale(attention, None, None) if shared_scale else (None, None)
    image = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for head, ax in enumerate(axes.flat):
            if head >= num_heads:
                ax.set_visible(False)
                continue
            lo, hi = _scale(attention[head], vmin, vmax)
            image = _draw(
                ax, attention[head], row_labels, col_labels, lo, hi, ticks=ticks
            )
            ax.set_title(f"head {head}", fontsize=9)
            if not shared_scale:
                fig.colorbar(image, ax=ax, shrink=0.8)
    if shared_scale and image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    fig.suptitle(_label(title), fontsize=11)
    return fig


def model_overview(attention_4d, title="", shared_scale=True, thumbnail=1.15):
    """Thumbnails of every head of every layer (rows: layers, columns: heads).

    Like bertviz's model view, but each head is a small heatmap, so a
    diagonal, a "previous token" band or a head that stares at one token
    stands out at a glance.

    Args:
        attention_4d: `(N, H, T, S)` weights.
        title: figure title.
        shared_scale: one colour scale for all thumbnails, else each head
            scaled to its own maximum.
        thumbnail: size of one thumbnail in inches.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    attention = np.asarray(attention_4d, dtype="float32")
    if attention.ndim != 4:
        raise ValueError(
            f"`attention_4d` must have shape (N, H, T, S). Received: "
            f"shape={attention.shape}"
        )
    num_layers, num_heads = attention.shape[:2]
    # At least 5 inches wide, so that the title fits over a small model.
    width = max(5.0, num_heads * thumbnail + 1.2)
    fig = _new_figure(width, num_layers * thumbnail + 0.6, dpi=80)
    axes = fig.subplots(num_layers, num_heads, squeeze=False)
    vmin, vmax = _scale(attention, None, None) if shared_scale else (None, None)
    image = None
    for (layer, head), ax in np.ndenumerate(axes):
        lo, hi = _scale(attention[layer, head], vmin, vmax)
        image = _draw(ax, attention[layer, head], [], [], lo, hi, ticks=False)
        if layer == 0:
            ax.set_title(f"head {head}", fontsize=8)
        if head == 0:
            ax.set_ylabel(f"layer {layer}", fontsize=8)
    if shared_scale and image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    fig.suptitle(_label(title), fontsize=11)
    return fig


def head_statistics(attention_4d):
    """Summary numbers per head, to find the interesting ones.

    Args:
        attention_4d: `(N, H, T, S)` weights; rows sum to 1.

    Returns:
        A list of N * H dicts, layer-major, with keys:
        - `layer`, `head`: ints.
        - `entropy`: mean over rows of the row entropy, in bits (0: every
          query looks at one key; log2(S): uniform).
        - `max_weight`: mean over rows of the row's largest weight.
        - `diagonality`: share of the attention mass within one key of the
          diagonal. For T != S the diagonal is scaled, row t's diagonal key
          being `t * (S - 1) / (T - 1)`.
        - `previous_token`: mean weight on key t - 1 from query t (t >= 1);
          `nan` unless T == S (self-attention).
        Statistics of heads with no rows are `nan`.
    """
    attention = np.asarray(attention_4d, dtype="float64")
    if attention.ndim != 4:
        raise ValueError(
            f"`attention_4d` must have shape (N, H, T, S). Received: "
            f"shape={attention.shape}"
        )
    num_layers, num_heads, rows, cols = attention.shape
    nan = float("nan")
    if rows and cols:
        logs = np.log2(attention, where=attention > 0, out=np.zeros_like(attention))
        entropy = -np.sum(attention * logs, axis=-1).mean(axis=-1)  # (N, H)
        max_weight = attention.max(axis=-1).mean(axis=-1)  # (N, H)
        diagonal = (
            np.arange(rows) * (cols - 1) / (rows - 1) if rows > 1 else np.zeros(1)
        )  # (T,)
        near = np.abs(np.arange(cols)[None, :] - diagonal[:, None]) <= 1 + 1e-9
        diagonality = (attention * near).sum(axis=(-2, -1)) / np.maximum(
            attention.sum(axis=(-2, -1)), 1e-12
        )  # (N, H)
        if rows == cols and rows > 1:
            previous = np.diagonal(attention, offset=-1, axis1=-2, axis2=-1)
            previous_token = previous.mean(axis=-1)  # (N, H)
        else:
            previous_token = np.full((num_layers, num_heads), nan)
    else:
        entropy = max_weight = diagonality = previous_token = np.full(
            (num_layers, num_heads), nan
        )
    return [
        {
            "layer": layer,
            "head": head,
            "entropy": float(entropy[layer, head]),
            "max_weight": float(max_weight[layer, head]),
            "diagonality": float(diagonality[layer, head]),
            "previous_token": float(previous_token[layer, head]),
        }
        for layer in range(num_layers)
        for head in range(num_heads)
    ]


def figure_to_png_bytes(fig, dpi=None):
    """Renders a figure to PNG bytes (`dpi=None`: the figure's own)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
