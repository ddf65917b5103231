"""How one head computes: keras_mha.head_trace, checked against the model."""

import pathlib

import numpy as np
import pytest
from keras import ops

from keras_mha import Translator
from keras_mha.head_trace import trace_head

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "models" / "en-es-tiny"
SOURCE, TARGET = "Where is the train station?", "¿Dónde está la estación?"


@pytest.fixture(scope="module")
def scored():
    translator = Translator.load(TINY)
    return translator, translator.score(SOURCE, TARGET, top_k=0)


def _ids(translator, translation, pad=0):
    """`(1, S + pad)` source and `(1, T + pad)` decoder ids, padded with 0."""
    piece = translator.tokenizer.piece_to_id
    source = [piece(p) for p in translation.source_tokens] + [0] * pad
    decoder = [piece(p) for p in translation.decoder_input_tokens] + [0] * pad
    return np.array([source], "int32"), np.array([decoder], "int32")


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
@pytest.mark.parametrize("pad", [0, 5])
def test_the_softmax_row_is_the_recorded_attention_row(scored, kind, pad):
    translator, translation = scored
    source, decoder = _ids(translator, translation, pad)
    recorded = translation.attention[kind]  # (N, H, rows, cols)
    for layer in range(recorded.shape[0]):
        for head in range(recorded.shape[1]):
            for query in (0, recorded.shape[2] - 1):
                stages = trace_head(
                    translator.model, source, decoder, kind, layer, head, query
                )
                cols = recorded.shape[3]
                np.testing.assert_allclose(
                    stages["weights"][:cols], recorded[layer, head, query], atol=1e-5
                )
                assert np.all(stages["weights"][cols:] == 0)  # Padding keys.


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_every_label_matches_its_numbers(scored, kind):
    translator, translation = scored
    source, decoder = _ids(translator, translation, pad=3)
    query = 2
    s = trace_head(translator.model, source, decoder, kind, 1, 1, query)
    model = translator.model
    assert s["d_k"] == model.hidden_dim // model.num_heads == s["q"].shape[0]
    # q · k per key is the sum of the per-dimension products; ÷ √d_k.
    np.testing.assert_allclose(s["dots"], s["products"].sum(-1), rtol=1e-6)
    np.testing.assert_allclose(s["scaled"], s["dots"] / np.sqrt(s["d_k"]), rtol=1e-6)
    # The mask: padding keys, and the future for decoder self-attention.
    keys = (
        (source if kind == "encoder" else decoder)[0] if kind != "cross" else source[0]
    )
    expected = keys > 0
    if kind == "decoder":
        expected &= np.arange(len(keys)) <= query
    np.testing.assert_array_equal(s["mask"], expected)
    # softmax over the unmasked keys of the scaled scores is the row; sums to 1.
    logits = np.where(s["mask"], s["scaled"], -np.inf)
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(s["weights"], softmax, atol=1e-5)
    assert s["weights"].sum() == pytest.approx(1.0, abs=1e-5)
    # The head's output is the weighted sum of the values; the concatenation
    # of every head through W_O is the attention output; then the residual.
    np.testing.assert_allclose(s["head_output"], s["weights"] @ s["values"], atol=1e-5)
    layer = (model.encoder_layers if kind == "encoder" else model.decoder_layers)[1]
    attention = {
        "encoder": "self_attention",
        "decoder": "self_attention",
        "cross": "cross_attention",
    }[kind]
    mha = getattr(layer, attention)
    kernel = ops.convert_to_numpy(mha.output_kernel).reshape(-1, mha.output_dim)
    projected = s["concat"] @ kernel + ops.convert_to_numpy(mha.output_bias)
    np.testing.assert_allclose(s["output"], projected, atol=1e-5)
    np.testing.assert_allclose(s["residual"], s["x"] + s["output"], atol=1e-5)


def test_the_stages_rebuild_the_layers_output(scored):
    translator, translation = scored
    source, decoder = _ids(translator, translation, pad=2)
    model = translator.model
    out = model(
        {"encoder_inputs": source, "decoder_inputs": decoder},
        return_hidden_states=True,
    )
    T = len(translation.decoder_input_tokens)
    for layer in range(model.num_decoder_layers):
        for query in range(T):
            s = trace_head(model, source, decoder, "cross", layer, 0, query)
            np.testing.assert_allclose(
                s["layer_output"],
                ops.convert_to_numpy(out["hidden_states"][layer])[0, query],
                atol=1e-5,
            )
    # The encoder: layer 1's block input is layer 0's output.
    first = trace_head(model, source, decoder, "encoder", 0, 0, 1)
    second = trace_head(model, source, decoder, "encoder", 1, 0, 1)
    np.testing.assert_allclose(first["layer_output"], second["x"], atol=1e-5)


def test_bad_requests_are_refused(scored):
    translator, translation = scored
    source, decoder = _ids(translator, translation)
    for args, message in [
        (("self", 0, 0, 0), "kind"),
        (("encoder", 5, 0, 0), "layer=5"),
        (("cross", 0, 9, 0), "head=9"),
        (("encoder", 0, 0, 99), "query=99"),
    ]:
        with pytest.raises(ValueError, match=message):
            trace_head(translator.model, source, decoder, *args)


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_layer_zeros_input_is_the_token_plus_its_position(scored, kind):
    translator, translation = scored
    source, decoder = _ids(translator, translation, pad=2)
    s = trace_head(translator.model, source, decoder, kind, 0, 0, 3)
    np.testing.assert_allclose(
        s["x"], s["token_vector"] + s["position_vector"], atol=1e-5
    )
    np.testing.assert_allclose(s["positions"][3], s["position_vector"], atol=1e-6)
    length = (source if kind == "encoder" else decoder).shape[1]
    assert s["positions"].shape == (length, translator.model.hidden_dim)
    # Sinusoidal: position 0 is sin(0) = 0 then cos(0) = 1.
    half = translator.model.hidden_dim // 2
    np.testing.assert_allclose(
        s["positions"][0], [0.0] * half + [1.0] * half, atol=1e-6
    )


def test_one_compiled_pass_per_kind_traces_every_layer_as_the_eager_one():
    from keras_mha.head_trace import trace_layer

    translator = Translator.load(TINY)  # Its own program count.
    translation = translator.score(SOURCE, TARGET, top_k=0)
    source, decoder = _ids(translator, translation)
    S, T = source.shape[1], decoder.shape[1]
    for kind in ("encoder", "decoder", "cross"):
        traced = translator.trace_layers(list(source[0]), list(decoder[0]), kind)
        layers = (
            translator.model.num_encoder_layers
            if kind == "encoder"
            else (translator.model.num_decoder_layers)
        )
        assert len(traced) == layers
        queries, keys = (
            (S, S) if kind == "encoder" else (T, T if kind == "decoder" else S)
        )
        for layer, compiled in enumerate(traced):
            eager = trace_layer(translator.model, source, decoder, kind, layer)
            assert compiled["weights"].shape[1:] == (queries, keys)
            assert compiled["queries"] == eager["queries"] == queries
            for name, value in eager.items():
                if isinstance(value, np.ndarray):
                    np.testing.assert_allclose(compiled[name], value, atol=1e-5)
                else:
                    assert compiled[name] == value, name
    # A longer sentence runs the same three programs.
    longer = translator.score(SOURCE + " " + SOURCE, TARGET + " " + TARGET, top_k=0)
    programs = translator.compiled_programs
    longer_source, longer_decoder = _ids(translator, longer)
    translator.trace_layers(list(longer_source[0]), list(longer_decoder[0]), "cross")
    assert translator.compiled_programs == programs
    with pytest.raises(ValueError, match="kind"):
        translator.trace_layers(list(source[0]), list(decoder[0]), "self")
