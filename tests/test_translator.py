"""Translator: loading a folder, batching, input handling, attention, CLI."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_mha import Translation, Translator
from keras_mha.translate import main as translate_main

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "models" / "en-es-tiny"
SHIPPED = [p for p in (ROOT / "saved_models").glob("*") if (p / "model.keras").exists()]
SENTENCES = ["I love you.", "Tom is here.", "Where is the station?", "Hi!"]


@pytest.fixture(scope="module")
def translator():
    return Translator.load(TINY)


def test_load_reads_model_tokenizer_and_card(translator):
    assert translator.name == "en-es-tiny"
    assert translator.card["dataset"] == "spa-eng"
    assert translator.model.num_heads == 2


def test_translation_fields_and_attention_shapes(translator):
    t = translator.translate("I love you.")
    assert isinstance(t, Translation)
    S, T = len(t.source_tokens), len(t.target_tokens)
    assert S > 0 and T > 0
    assert t.attention["encoder"].shape == (2, 2, S, S)
    assert t.attention["decoder"].shape == (2, 2, T, T)
    assert t.attention["cross"].shape == (2, 2, T, S)
    assert len(t.token_probs) == T
    assert t.decoder_input_tokens[0] == "<s>"
    assert t.decoder_input_tokens[1:] == t.target_tokens[:-1]
    # No padding rows or columns: every row of every map sums to 1.
    for kind, att in t.attention.items():
        np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-4, err_msg=kind)
    assert np.isclose(t.score, np.sum(np.log(t.token_probs)), atol=1e-3)


def test_batched_equals_one_by_one(translator):
    batched = translator.translate(SENTENCES)
    for sentence, together in zip(SENTENCES, batched):
        alone = translator.translate(sentence)
        assert alone.target_tokens == together.target_tokens
        np.testing.assert_allclose(
            alone.attention["cross"], together.attention["cross"], atol=1e-5
        )


def test_empty_input_does_not_call_the_model(translator):
    translator._searches.clear()
    for text in ["", "   ", "\n\t"]:
        t = translator.translate(text)
        assert t.text == "" and t.target_tokens == []
        assert t.attention["cross"].shape[2:] == (0, 0)
    assert translator._searches == {}


def test_long_input_is_truncated_not_an_error(translator):
    t = translator.translate("Tom is here. " * 200)
    assert t.truncated
    assert len(t.source_tokens) == translator.max_source_length


def test_unknown_characters_map_to_unk(translator):
    t = translator.translate("日本語 😀 \u202eשלום\x00\x07")
    assert "<unk>" in t.source_tokens or "▁" in "".join(t.source_tokens)
    assert all("\x00" not in p for p in t.source_tokens)


def test_beam_search_n_best(translator):
    t = translator.translate("I love you.", beam_size=3, n_best=3)
    assert len(t.n_best) == 2
    assert t.score >= t.n_best[0].score >= t.n_best[1].score
    with pytest.raises(ValueError, match="n_best"):
        translator.translate("x", beam_size=2, n_best=3)


def test_disabled_heads_change_attention_and_reuse_compilation(translator):
    plain = translator.translate("Where is the station?")
    count = len(translator._searches)
    ablated = translator.translate(
        "Where is the station?",
        disabled_heads={"cross": [(0, 0), (0, 1), (1, 0), (1, 1)]},
    )
    assert len(translator._searches) == count  # Head masks are inputs.
    assert not np.allclose(plain.token_probs[:1], ablated.token_probs[:1])
    with pytest.raises(ValueError, match="layers"):
        translator.translate("x", disabled_heads={"cross": [(5, 0)]})


def test_cli_translates_arguments_and_stdin(tmp_path, capsys):
    out = tmp_path / "att.npz"
    translate_main(["--model", str(TINY), "--attention", str(out), "I love you."])
    # One line per text (the tiny model's translation may be empty).
    assert capsys.readouterr().out.count("\n") == 1
    arrays = np.load(out)
    assert arrays["cross_attention"].ndim == 4
    result = subprocess.run(
        [sys.executable, "-m", "keras_mha.translate", "--model", str(TINY)],
        input="I love you.\nTom is here.\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.splitlines()) == 2


@pytest.mark.slow
@pytest.mark.parametrize("folder", [TINY] + SHIPPED, ids=lambda p: p.name)
def test_tensorflow_and_jax_produce_the_same_tokens(folder, tmp_path):
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    here = [t.target_tokens for t in Translator.load(folder).translate(SENTENCES)]
    script = (
        "import json, sys; from keras_mha import Translator; "
        f"t = Translator.load({str(folder)!r}); "
        f"print(json.dumps([x.target_tokens for x in t.translate({SENTENCES!r})]))"
    )
    env = dict(os.environ, KERAS_BACKEND=other)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    there = json.loads(result.stdout.strip().splitlines()[-1])
    assert here == there
