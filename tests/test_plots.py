"""Tests for `keras_mha.plots`: statistics on hand-made matrices, merging,
and figures (labels, colour bars, grid sizes).

Shape legend: N layers, H heads, T query tokens, S key tokens (S != T in
the cross-attention cases).
"""

import ast
import math
import pathlib

import numpy as np
import pytest
from matplotlib.figure import Figure

from keras_mha import plots

N, H, T, S = 2, 3, 4, 6


def stats_of(matrix):
    """Statistics of a single (T, S) matrix."""
    (row,) = plots.head_statistics(np.asarray(matrix)[None, None])
    return row


def test_identity_is_diagonal_and_certain():
    row = stats_of(np.eye(5))
    assert row["entropy"] == pytest.approx(0.0)
    assert row["max_weight"] == pytest.approx(1.0)
    assert row["diagonality"] == pytest.approx(1.0)
    assert row["previous_token"] == pytest.approx(0.0)


def test_uniform_has_maximal_entropy():
    row = stats_of(np.full((T, S), 1 / S))
    assert row["entropy"] == pytest.approx(math.log2(S))
    assert row["max_weight"] == pytest.approx(1 / S)
    assert math.isnan(row["previous_token"])  # T != S: not self-attention.


def test_previous_token_head():
    shifted = np.eye(5, k=-1)
    shifted[0, 0] = 1.0  # The first query has no previous token.
    row = stats_of(shifted)
    assert row["previous_token"] == pytest.approx(1.0)
    assert row["diagonality"] == pytest.approx(1.0)  # Within ±1 of it.
    far = np.zeros((5, 5))
    far[:, -1] = 1.0  # Everyone looks at the last token.
    assert stats_of(far)["diagonality"] == pytest.approx(2 / 5)


def test_diagonal_is_scaled_when_lengths_differ():
    # Row t's diagonal key is t * (S - 1) / (T - 1) = 0, 2.5 (and 5 for T=3).
    matrix = np.zeros((3, S))
    matrix[0, 0] = matrix[1, 3] = matrix[2, 5] = 1.0
    assert stats_of(matrix)["diagonality"] == pytest.approx(1.0)
    matrix = np.zeros((3, S))
    matrix[:, 0] = 1.0
    assert stats_of(matrix)["diagonality"] == pytest.approx(1 / 3)


def test_statistics_one_dict_per_head_layer_major():
    rng = np.random.default_rng(0)
    attention = rng.random((N, H, T, S))
    attention /= attention.sum(-1, keepdims=True)
    rows = plots.head_statistics(attention)
    assert [(r["layer"], r["head"]) for r in rows] == [
        (layer, head) for layer in range(N) for head in range(H)
    ]
    for r in rows:
        assert 0 < r["entropy"] < math.log2(S)
        assert 1 / S < r["max_weight"] < 1


def test_statistics_of_empty_attention_are_nan():
    rows = plots.head_statistics(np.zeros((N, H, 0, 0)))
    assert len(rows) == N * H
    assert all(math.isnan(r["entropy"]) for r in rows)


def test_statistics_reject_wrong_rank():
    with pytest.raises(ValueError, match="shape"):
        plots.head_statistics(np.eye(3))


def test_merge_pieces_sums_keys_and_averages_queries():
    attention = np.array(
        [[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]
    )  # (T=2, S=3): 2 query pieces of one word, keys: words [0], [1, 2].
    merged = plots.merge_pieces(attention, [[0, 1]], [[0], [1, 2]])
    np.testing.assert_allclose(merged, [[0.3, 0.7]])
    # Leading axes are kept; rows still sum to 1.
    rng = np.random.default_rng(1)
    attention = rng.random((N, H, T, S))
    attention /= attention.sum(-1, keepdims=True)
    merged = plots.merge_pieces(attention, [[0], [1, 2], [3]], [[0, 1], [2, 3, 4, 5]])
    assert merged.shape == (N, H, 3, 2)
    np.testing.assert_allclose(merged.sum(-1), 1.0, rtol=1e-6)
    assert plots.merge_pieces(np.zeros((N, H, 0, 0)), [], []).shape == (N, H, 0, 0)


def tick_texts(labels):
    return [label.get_text() for label in labels]


def test_head_heatmap_has_tokens_and_colour_bar():
    rows, cols = ["▁Hola", "</s>"], ["▁Hello", "$5", "</s>"]
    matrix = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    fig = plots.head_heatmap(matrix, rows, cols, title="cross, layer 0, head 1")
    assert isinstance(fig, Figure)
    ax, colour_bar = fig.axes  # The heatmap and its colour bar.
    assert tick_texts(ax.get_yticklabels()) == rows
    # "$" is escaped so that matplotlib does not read it as mathtext.
    assert tick_texts(ax.get_xticklabels()) == ["▁Hello", r"\$5", "</s>"]
    assert ax.get_title() == "cross, layer 0, head 1"
    (image,) = ax.get_images()
    assert image.get_array().shape == (2, 3)
    assert image.get_clim() == pytest.approx((0.0, 0.8))  # Its own maximum.
    assert len(ax.texts) == 6  # Small matrices show their values.
    assert plots.figure_to_png_bytes(fig).startswith(b"\x89PNG")


def test_head_heatmap_shared_scale_and_bad_labels():
    fig = plots.head_heatmap(np.eye(20), list("abcdefghijklmnopqrst"), ["x"] * 20)
    ax = fig.axes[0]
    assert not ax.texts  # Too large to annotate.
    fig = plots.head_heatmap(np.eye(2) / 2, ["a", "b"], ["c", "d"], vmax=1.0)
    assert fig.axes[0].get_images()[0].get_clim() == (0.0, 1.0)
    with pytest.raises(ValueError, match="labels"):
        plots.head_heatmap(np.eye(2), ["a"], ["b", "c"])
    with pytest.raises(ValueError, match="shape"):
        plots.head_heatmap(np.zeros((2, 2, 2)), ["a", "b"], ["b", "c"])


def test_head_heatmap_into_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.head_heatmap(np.eye(2), ["a", "b"], ["c", "d"], ax=ax) is fig


def image_axes(fig):
    return [ax for ax in fig.axes if ax.get_images() and ax.get_visible()]


@pytest.mark.parametrize("shared", [True, False])
def test_layer_grid_one_panel_per_head(shared):
    rng = np.random.default_rng(2)
    attention = rng.random((5, T, S))
    fig = plots.layer_grid(
        attention, list("abcd"), list("uvwxyz"), "layer 0", shared_scale=shared
    )
    panels = image_axes(fig)
    assert [ax.get_title() for ax in panels] == [f"head {h}" for h in range(5)]
    assert tick_texts(panels[0].get_yticklabels()) == list("abcd")
    colour_bars = len(fig.axes) - 8  # 2 rows of 4 axes, one hidden.
    assert colour_bars == (1 if shared else 5)
    limits = {ax.get_images()[0].get_clim() for ax in panels}
    assert len(limits) == (1 if shared else 5)


def test_model_overview_thumbnail_per_layer_and_head():
    attention = np.random.default_rng(3).random((N, H, T, S))
    fig = plots.model_overview(attention, "cross")
    panels = image_axes(fig)
    assert len(panels) == N * H
    assert panels[0].get_ylabel() == "layer 0"
    assert panels[H - 1].get_title() == f"head {H - 1}"
    for layer, head in np.ndindex(N, H):
        shown = panels[layer * H + head].get_images()[0].get_array()
        np.testing.assert_allclose(shown, attention[layer, head], rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        plots.model_overview(attention[0])


def test_plots_import_neither_gradio_nor_training():
    source = pathlib.Path(plots.__file__).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module
            imported.add(
                module if module.startswith("keras_mha") else module.split(".")[0]
            )
    # The word grouping is shared with the library; nothing else of it.
    allowed = {"io", "math", "warnings", "numpy", "matplotlib", "keras_mha.tokens"}
    assert imported <= allowed
