"""Cached greedy and beam search: the specification of keras_mha.decoding."""

import pathlib

import keras
import numpy as np
import pytest
from keras import ops

from keras_mha.decoding import (
    SearchModel,
    beam_search,
    greedy_search,
    greedy_search_uncached,
)
from keras_mha.transformer import Transformer

BOS, EOS = 2, 3


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(7)
    return Transformer(
        40,
        40,
        num_encoder_layers=2,
        num_decoder_layers=2,
        hidden_dim=16,
        intermediate_dim=32,
        num_heads=2,
        dropout=0.0,
        max_length=24,
        share_embeddings=True,
    )


@pytest.fixture(scope="module")
def source():
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 40, (3, 7)).astype("int32")
    ids[1, 4:] = 0  # One padded source: S differs per row.
    return ids


def _np(x):
    return ops.convert_to_numpy(x)


def test_cached_greedy_equals_uncached_greedy(model, source):
    cached = _np(greedy_search(model, source, 10, BOS, EOS)["tokens"])
    uncached = _np(greedy_search_uncached(model, source, 10, BOS, EOS))
    np.testing.assert_array_equal(cached, uncached)


def test_recorded_attention_equals_teacher_forced_pass(model, source):
    out = greedy_search(model, source, 10, BOS, EOS)
    tokens = _np(out["tokens"])
    decoder_inputs = np.concatenate(
        [np.full((3, 1), BOS, "int32"), tokens[:, :-1]], axis=1
    )
    full = model(
        {"encoder_inputs": source, "decoder_inputs": decoder_inputs},
        return_attention_scores=True,
    )
    for row in range(3):
        ended = np.flatnonzero(tokens[row] == EOS)
        T = ended[0] + 1 if len(ended) else 10
        S = int(np.sum(source[row] != 0))
        for layer in range(2):
            np.testing.assert_allclose(
                _np(out["cross"])[layer, row, :, :T, :S],
                _np(full["cross_attentions"][layer])[row, :, :T, :S],
                atol=1e-5,
            )
            np.testing.assert_allclose(
                _np(out["decoder"])[layer, row, :, :T, :T],
                _np(full["decoder_attentions"][layer])[row, :, :T, :T],
                atol=1e-5,
            )
            np.testing.assert_allclose(
                _np(out["encoder"])[layer, row, :, :S, :S],
                _np(full["encoder_attentions"][layer])[row, :, :S, :S],
                atol=1e-5,
            )


def test_log_probs_match_the_full_pass(model, source):
    out = greedy_search(model, source, 6, BOS, EOS, return_attention=False)
    assert "cross" not in out
    tokens = _np(out["tokens"])
    decoder_inputs = np.concatenate(
        [np.full((3, 1), BOS, "int32"), tokens[:, :-1]], axis=1
    )
    logits = _np(model({"encoder_inputs": source, "decoder_inputs": decoder_inputs}))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = np.take_along_axis(log_probs, tokens[..., None], -1)[..., 0]
    finished = np.cumsum(tokens == EOS, axis=1) - (tokens == EOS) > 0
    expected[finished] = 0.0
    np.testing.assert_allclose(_np(out["log_probs"]), expected, atol=1e-4)


def test_beam_of_one_is_greedy(model, source):
    greedy = _np(greedy_search(model, source, 10, BOS, EOS)["tokens"])
    beam = _np(beam_search(model, source, 10, BOS, EOS, beam_size=1)["tokens"])
    np.testing.assert_array_equal(beam[:, 0], greedy)


def test_beam_search_sorted_and_at_least_as_good_as_greedy(model, source):
    out = beam_search(model, source, 10, BOS, EOS, beam_size=4, length_penalty=0.0)
    scores = _np(out["scores"])
    assert scores.shape == (3, 4)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    greedy = _np(greedy_search(model, source, 10, BOS, EOS)["log_probs"]).sum(-1)
    # With alpha = 0 the score is the log-probability: beam search never
    # returns a worse best hypothesis than greedy on these inputs.
    assert np.all(scores[:, 0] >= greedy - 1e-4)
    assert _np(out["cross"]).shape == (2, 3, 4, 2, 10, 7)


def test_beam_scores_are_the_hypotheses_log_probs(model, source):
    out = beam_search(model, source, 10, BOS, EOS, beam_size=3, length_penalty=0.0)
    np.testing.assert_allclose(
        _np(out["scores"]), _np(out["log_probs"]).sum(-1), atol=1e-4
    )


def test_head_mask_changes_the_search(model, source):
    ones = {k: ops.ones((2, 2)) for k in ("encoder", "decoder", "cross")}
    plain = greedy_search(model, source, 8, BOS, EOS)
    same = greedy_search(model, source, 8, BOS, EOS, head_masks=ones)
    np.testing.assert_allclose(_np(plain["log_probs"]), _np(same["log_probs"]))
    off = dict(ones, cross=ops.zeros((2, 2)))
    ablated = greedy_search(model, source, 8, BOS, EOS, head_masks=off)
    assert not np.allclose(_np(plain["log_probs"]), _np(ablated["log_probs"]))


def test_search_model_compiles_once_per_shape(model, source):
    search = SearchModel(model, beam_size=1, max_length=8, bos_id=BOS, eos_id=EOS)
    masks = {k: np.ones((3, 2, 2), "float32") for k in ("encoder", "decoder", "cross")}
    first = search.predict_on_batch({"encoder_inputs": source, **masks})
    again = search.predict_on_batch({"encoder_inputs": source, **masks})
    np.testing.assert_array_equal(first["tokens"], again["tokens"])
    eager = _np(greedy_search(model, source, 8, BOS, EOS)["tokens"])
    np.testing.assert_array_equal(np.asarray(first["tokens"]), eager)


SHIPPED_EN_DE = pathlib.Path(__file__).parents[1] / "saved_models" / "en-de"


@pytest.mark.skipif(
    not (SHIPPED_EN_DE / "model.keras").exists(), reason="no shipped en-de model"
)
def test_beam_search_stops_once_no_live_beam_can_win():
    # A trained model ends its hypotheses (the tiny fixture model never
    # does); the search must then stop long before `max_length`, and the
    # best hypothesis must not depend on how far it was allowed to run.
    import sentencepiece

    folder = SHIPPED_EN_DE
    trained = keras.saving.load_model(folder / "model.keras")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    sentences = [
        "A man in a blue shirt is riding a bike down the street.",
        "Two dogs play in the snow.",
        "A girl is reading a book.",
    ]
    ids = [sp.encode(s) + [sp.eos_id()] for s in sentences]
    source = np.zeros((len(ids), max(map(len, ids))), "int32")
    for row, sentence_ids in enumerate(ids):
        source[row, : len(sentence_ids)] = sentence_ids
    bos, eos = sp.bos_id(), sp.eos_id()
    outputs = [
        beam_search(trained, source, max_length, bos, eos, beam_size=4)
        for max_length in (40, 60)
    ]
    tokens = [_np(out["tokens"]) for out in outputs]  # (B, K, T) each
    written = np.flatnonzero(np.any(tokens[0] != 0, axis=(0, 1)))
    assert written.max() < 30  # Stopped early: nothing written after that.
    for short, long in zip(tokens[0][:, 0], tokens[1][:, 0]):
        assert eos in short  # The best hypotheses are finished ...
        np.testing.assert_array_equal(short, long[: len(short)])  # ... and equal.
        assert not long[len(short) :].any()
