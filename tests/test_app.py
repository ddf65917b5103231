"""Tests for `app.py`, by calling its handlers on the tiny fixture model.

The translations are garbage (the model is tiny); the tests check shapes,
messages, files and that bad input gives a message, never a traceback.
"""

import html
import json
import os
import pathlib
import shutil
import tempfile
import types

import gradio as gr
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from keras_mha import plots
from tests.app_fixtures import FIXTURE_MODELS, REPO_ROOT, TINY_MODEL, import_app

SENTENCE = "Where is the train station?"


@pytest.fixture(scope="module")
def app():
    with import_app() as module:
        yield module


@pytest.fixture(scope="module")
def translated(app):
    """Outputs of the Translate button for `SENTENCE`."""
    return app.run_translation(SENTENCE, TINY_MODEL, "greedy", 4)


def test_models_are_loaded_once_with_a_label_from_the_card(app):
    assert list(app.TRANSLATORS) == [TINY_MODEL]
    assert app.FAILURES == {}
    assert app.MODEL_CHOICES == [("English → Spanish (en-es-tiny)", TINY_MODEL)]
    assert isinstance(app.demo, gr.Blocks)


def test_model_label_shows_the_test_bleu(app):
    card = {
        "languages": ["en", "de"],
        "evaluation": {
            "valid_greedy": {"split": "valid", "beam_size": 1, "bleu": 30.0},
            "test_beam4": {"split": "test", "beam_size": 4, "bleu": 35.14},
            "test_greedy": {"split": "test", "beam_size": 1, "bleu": 34.0},
        },
    }
    translator = types.SimpleNamespace(name="en-de", card=card)
    assert app.model_label(translator) == "English → German (en-de, BLEU 35.1)"
    bare = types.SimpleNamespace(name="mystery", card={})
    assert app.model_label(bare) == "mystery (no card)"


def test_a_corrupt_model_folder_is_reported_and_the_others_load(app, tmp_path):
    shutil.copytree(FIXTURE_MODELS / TINY_MODEL, tmp_path / "good")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"not a zip file")
    shutil.copy(FIXTURE_MODELS / TINY_MODEL / "spm.model", broken)
    (tmp_path / "notes").mkdir()  # No model.keras: not a model folder.
    translators, failures = app.load_models(tmp_path)
    assert list(translators) == ["good"]
    assert list(failures) == ["broken"]
    assert failures["broken"]  # The reason, e.g. "ValueError: ...".
    assert app.load_models(tmp_path / "missing") == ({}, {})


def test_app_starts_without_any_model(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.keras").write_bytes(b"\x00garbage")
    with import_app(tmp_path) as empty_app:
        assert empty_app.TRANSLATORS == {}
        assert list(empty_app.FAILURES) == ["broken"]
        with pytest.raises(gr.Error, match="Unknown model"):
            empty_app.api_translate("Hello", TINY_MODEL)


def test_translate_button(app, translated):
    text, confidence, info, state, *ablation, original, ablated, _ = translated
    translation = state["translation"]
    assert text == translation.text == original
    assert ablated == ""
    assert "Translated in" in info and "greedy" in info
    assert confidence.count("<span") == len(translation.target_tokens)
    # Ablation choices: every head of every kind, unticked.
    for update, kind in zip(ablation, ("encoder", "decoder", "cross")):
        assert update["value"] == []
        assert ("L1 H0", f"{kind}:1:0") in update["choices"]
    assert state["model"] == TINY_MODEL and state["text"] == SENTENCE


def test_downloads_are_written_to_a_temp_dir(translated):
    npz_path, json_path = map(pathlib.Path, translated[3]["files"])
    temp = pathlib.Path(tempfile.gettempdir()).resolve()
    for path in (npz_path, json_path):
        assert path.is_file()
        assert temp in path.resolve().parents
        assert REPO_ROOT not in path.resolve().parents
    translation = translated[3]["translation"]
    with np.load(npz_path) as arrays:
        np.testing.assert_allclose(
            arrays["cross_attention"], translation.attention["cross"]
        )
        assert list(arrays["source_tokens"]) == translation.source_tokens
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["target_tokens"] == translation.target_tokens
    assert np.array(data["attention"]["decoder"]).shape == (
        translation.attention["decoder"].shape
    )


def test_old_exports_are_pruned(app):
    old = app.export_folder()
    (old / "attention.npz").write_bytes(b"x")
    os.utime(old, (0, 0))  # 1970.
    new = app.export_folder()
    assert not old.exists() and new.is_dir()
    assert new.parent == app.EXPORT_DIR


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
@pytest.mark.parametrize("merge,shared", [(False, True), (True, False)])
def test_explorer_figures_statistics_and_png(app, translated, kind, merge, shared):
    state = translated[3]
    layers, heads, head_fig, layer_fig, overview, stats, files = app.show_attention(
        state, kind, 1, 1, merge, shared
    )
    translation = state["translation"]
    num_layers, num_heads = translation.attention[kind].shape[:2]
    assert layers["choices"] == list(range(num_layers)) and layers["value"] == 1
    assert heads["choices"] == list(range(num_heads)) and heads["value"] == 1
    for fig in (head_fig, layer_fig, overview):
        assert isinstance(fig, Figure)
    assert f"{kind_name(app, kind)}, layer 1, head 1" == head_fig.axes[0].get_title()
    assert isinstance(stats, pd.DataFrame) and len(stats) == num_layers * num_heads
    assert {"layer", "head", "entropy", "max_weight", "diagonality"} <= set(stats)
    png = pathlib.Path(files[-1])
    assert png.name == f"{kind}_layer1_head1.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert files[:2] == state["files"]
    pieces = (
        translation.source_tokens if kind == "encoder" else (translation.target_tokens)
    )
    rows = len(plots.word_groups(pieces)) if merge else len(pieces)
    assert len(head_fig.axes[0].get_yticklabels()) == rows


def kind_name(app, kind):
    return dict((v, k) for k, v in app.KIND_CHOICES)[kind]


def test_explorer_head_only_and_out_of_range_selectors(app, translated):
    outputs = app.show_attention(translated[3], "cross", 0, 1, False, True, "head")
    assert isinstance(outputs[2], Figure)
    assert all(o == gr.update() for o in outputs[:2] + outputs[3:6])
    # Stale selectors (from a bigger model) are clamped, not an error.
    outputs = app.show_attention(translated[3], "encoder", 9, 9, False, True)
    assert outputs[0]["value"] == 1 and outputs[1]["value"] == 1


def test_explorer_before_any_translation_is_empty(app):
    outputs = app.show_attention(None, "cross", 0, 0, False, True)
    assert outputs[2:] == (None, None, None, None, None)


def test_head_ablation(app, translated):
    state = translated[3]
    text, confidence, info = app.run_ablation(
        state, ["encoder:0:1"], [], ["cross:0:0", "cross:1:1"]
    )
    assert isinstance(text, str)
    assert "3 head(s) switched off" in info
    # Switching nothing off reproduces the original.
    assert app.run_ablation(state, [], [], [])[0] == translated[0]
    with pytest.raises(gr.Error, match="Translate something first"):
        app.run_ablation(None, [], [], [])


def test_empty_input_gives_a_message(app):
    with pytest.warns(UserWarning, match="Empty input"):  # gr.Warning's toast.
        outputs = app.run_translation("   ", TINY_MODEL, "greedy", 4)
    assert outputs[0] == "" and outputs[3] is None
    assert "Empty input" in outputs[2]
    text, stats = app.api_translate("", TINY_MODEL)
    assert text == "" and "Empty input" in stats["message"]


def test_long_input_is_translated_with_a_notice(app):
    text, stats = app.api_translate("The cat sleeps. " * 320, TINY_MODEL)  # 5,120.
    assert stats["truncated"] is True
    assert "too long" in stats["message"]
    assert isinstance(text, str)
    with pytest.warns(UserWarning, match="too long"):
        info = app.run_translation("word " * 1000, TINY_MODEL, "greedy", 4)[2]
    assert "too long" in info


@pytest.mark.parametrize(
    "text",
    [
        "I ❤️ Tokyo 東京 🚄!",
        "مرحبا بالعالم",
        "<script>alert('x')</script> <b>bold</b>",
        "tab\there\x00null\x07bell\x1b[31mred",
    ],
)
def test_unusual_input_translates(app, text):
    translation, stats = app.api_translate(text, TINY_MODEL)
    assert isinstance(translation, str)
    assert stats["source_tokens"] and not stats["message"]


def test_confidence_html_escapes_tokens(app):
    translation = types.SimpleNamespace(
        target_tokens=["<script>alert(1)</script>", "</s>"], token_probs=[0.9, 0.5]
    )
    out = app.confidence_html(translation)
    assert "<script>" not in out
    assert html.escape("<script>alert(1)</script>") in out


def test_api_translate_with_beam_search(app):
    text, stats = app.api_translate(SENTENCE, TINY_MODEL, "beam", 3)
    assert stats["decoding"] == "beam search, beam 3"
    assert len(stats["token_probs"]) == len(stats["target_tokens"])
    assert stats["seconds"] >= 0
    with pytest.raises(gr.Error, match="Unknown decoding"):
        app.api_translate(SENTENCE, TINY_MODEL, "sampling")
    with pytest.raises(gr.Error, match="Unknown model"):
        app.api_translate(SENTENCE, "xx-yy")


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_api_attention(app, kind):
    out = app.api_attention(SENTENCE, TINY_MODEL, kind, 1, 0)
    matrix = np.array(out["attention"])
    assert matrix.shape == (len(out["row_tokens"]), len(out["column_tokens"]))
    np.testing.assert_allclose(matrix.sum(-1), 1.0, atol=1e-3)
    if kind == "decoder":
        assert out["column_tokens"][0] == "<s>"
        assert np.allclose(np.triu(matrix, 1), 0.0)  # Causal.
    json.dumps(out)  # JSON-able as it is.


def test_api_attention_bad_arguments(app):
    with pytest.raises(gr.Error, match="Unknown kind"):
        app.api_attention(SENTENCE, TINY_MODEL, "self", 0, 0)
    with pytest.raises(gr.Error, match="does not exist"):
        app.api_attention(SENTENCE, TINY_MODEL, "cross", 5, 0)


def test_unexpected_errors_become_a_short_message(app):
    @app.friendly_errors
    def broken():
        raise RuntimeError("/secret/path/in/a/traceback")

    with pytest.raises(gr.Error) as info:
        broken()
    assert "secret" not in str(info.value)
    assert "RuntimeError" in str(info.value)


def test_model_card(app):
    assert app.model_card(TINY_MODEL).startswith("# tiny")
    assert app.model_card("../../etc") == "No model card."
