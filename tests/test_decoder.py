"""Tests for `keras_mha.decoder.TransformerDecoderLayer`.

Shape legend: B batch, T target length, S source length (S != T), D model
dim, H heads, K key dim, L_max the self-attention cache length.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_mha.decoder import TransformerDecoderLayer
from tests.layer_test import run_layer_test, to_numpy

B, T, S, D, H, F = 2, 5, 7, 16, 2, 32
K = D // H
ATOL = 1e-5
DECODER_MASK = np.arange(T)[None, :] < np.array([[5], [3]])  # (B, T)
ENCODER_MASK = np.arange(S)[None, :] < np.array([[6], [4]])  # (B, S)


def random(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def make_layer(**kwargs):
    layer = TransformerDecoderLayer(
        intermediate_dim=F, num_heads=H, bias_initializer="ones", **kwargs
    )
    layer.build((B, T, D), (B, S, D))
    return layer


def inputs():
    return random(B, T, D, seed=1), random(B, S, D, seed=2)


@pytest.mark.parametrize("normalize_first", [True, False])
def test_layer_contract(normalize_first):
    decoder_sequence, encoder_sequence = inputs()
    run_layer_test(
        TransformerDecoderLayer,
        {
            "intermediate_dim": F,
            "num_heads": H,
            "dropout": 0.1,
            "normalize_first": normalize_first,
        },
        {
            "decoder_sequence": decoder_sequence,
            "encoder_sequence": encoder_sequence,
            "encoder_padding_mask": ENCODER_MASK,
        },
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=((B, T, D), (B, H, T, T), (B, H, T, S)),
        # 2 x 8 attention + 4 feed-forward + 3 x 2 layer norm weights.
        expected_num_trainable_weights=26,
        allow_unchanged_weights=("key_bias",),
    )


def test_pre_ln_and_post_ln_differ():
    decoder_sequence, encoder_sequence = inputs()
    pre_ln, post_ln = make_layer(), make_layer(normalize_first=False)
    post_ln.set_weights(pre_ln.get_weights())
    pre_output = to_numpy(pre_ln(decoder_sequence, encoder_sequence))
    post_output = to_numpy(post_ln(decoder_sequence, encoder_sequence))
    assert np.all(np.isfinite(pre_output)) and np.all(np.isfinite(post_output))
    assert not np.allclose(pre_output, post_output, atol=1e-3)


def test_scores_shapes():
    decoder_sequence, encoder_sequence = inputs()
    output, self_scores, cross_scores = make_layer()(
        decoder_sequence, encoder_sequence, return_attention_scores=True
    )
    assert tuple(output.shape) == (B, T, D)
    assert tuple(self_scores.shape) == (B, H, T, T)
    assert tuple(cross_scores.shape) == (B, H, T, S)


@pytest.mark.parametrize("normalize_first", [True, False])
def test_future_target_tokens_do_not_change_earlier_outputs(normalize_first):
    layer = make_layer(normalize_first=normalize_first)
    decoder_sequence, encoder_sequence = inputs()
    output, self_scores, _ = layer(
        decoder_sequence, encoder_sequence, return_attention_scores=True
    )
    assert np.all(to_numpy(self_scores)[..., np.triu(np.ones((T, T), bool), 1)] == 0.0)
    for t in range(T):
        changed = decoder_sequence.copy()
        changed[:, t] += 5.0
        changed_output = to_numpy(layer(changed, encoder_sequence))
        np.testing.assert_allclose(
            changed_output[:, :t], to_numpy(output)[:, :t], atol=ATOL
        )
        assert not np.allclose(changed_output[:, t], to_numpy(output)[:, t], atol=1e-3)


def test_decoder_padding_mask():
    layer = make_layer()
    decoder_sequence, encoder_sequence = inputs()
    output, self_scores, cross_scores = layer(
        decoder_sequence,
        encoder_sequence,
        decoder_padding_mask=DECODER_MASK,
        return_attention_scores=True,
    )
    changed = np.where(DECODER_MASK[..., None], decoder_sequence, 9.0)
    changed_output = to_numpy(
        layer(changed, encoder_sequence, decoder_padding_mask=DECODER_MASK)
    )
    np.testing.assert_allclose(
        changed_output[DECODER_MASK], to_numpy(output)[DECODER_MASK], atol=ATOL
    )
    # Padded queries attend to nothing.
    for scores in (to_numpy(self_scores), to_numpy(cross_scores)):
        assert np.all(scores.transpose(0, 2, 1, 3)[~DECODER_MASK] == 0.0)


def test_cross_attention_uses_the_encoder_padding_mask():
    layer = make_layer()
    decoder_sequence, encoder_sequence = inputs()
    output, _, cross_scores = layer(
        decoder_sequence,
        encoder_sequence,
        encoder_padding_mask=ENCODER_MASK,
        return_attention_scores=True,
    )
    cross_scores = to_numpy(cross_scores)  # (B, H, T, S)
    padded_keys = np.broadcast_to(~ENCODER_MASK[:, None, None, :], cross_scores.shape)
    assert np.all(cross_scores[padded_keys] == 0.0)
    np.testing.assert_allclose(cross_scores.sum(-1), 1.0, atol=ATOL)

    changed = np.where(ENCODER_MASK[..., None], encoder_sequence, 9.0)
    changed_output = layer(decoder_sequence, changed, encoder_padding_mask=ENCODER_MASK)
    np.testing.assert_allclose(to_numpy(changed_output), to_numpy(output), atol=ATOL)
    # Without the mask the padding does leak in.
    assert not np.allclose(
        to_numpy(layer(decoder_sequence, changed)), to_numpy(output), atol=1e-3
    )


def test_implicit_keras_masks_equal_explicit_padding_masks():
    layer = make_layer()
    rng = np.random.default_rng(0)
    target_ids = (rng.integers(1, 20, (B, T)) * DECODER_MASK).astype("int32")
    source_ids = (rng.integers(1, 20, (B, S)) * ENCODER_MASK).astype("int32")
    target_embedding = keras.layers.Embedding(20, D, mask_zero=True)
    source_embedding = keras.layers.Embedding(20, D, mask_zero=True)
    target, source = keras.Input((T,), dtype="int32"), keras.Input((S,), dtype="int32")
    outputs = layer(
        target_embedding(target),
        source_embedding(source),
        return_attention_scores=True,
    )
    implicit = keras.Model([target, source], outputs)((target_ids, source_ids))
    explicit = layer(
        to_numpy(target_embedding(target_ids)),  # NumPy copies carry no Keras mask.
        to_numpy(source_embedding(source_ids)),
        decoder_padding_mask=DECODER_MASK,
        encoder_padding_mask=ENCODER_MASK,
        return_attention_scores=True,
    )
    for a, b in zip(implicit, explicit):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=ATOL)


@pytest.mark.parametrize("normalize_first", [True, False])
@pytest.mark.parametrize("precompute_cross", [True, False])
def test_cached_step_by_step_equals_full_pass(normalize_first, precompute_cross):
    layer = make_layer(normalize_first=normalize_first)
    decoder_sequence, encoder_sequence = inputs()
    output, self_scores, cross_scores = (
        to_numpy(x)
        for x in layer(
            decoder_sequence,
            encoder_sequence,
            encoder_padding_mask=ENCODER_MASK,
            return_attention_scores=True,
        )
    )
    max_length = T + 2
    cache = (ops.zeros((B, H, max_length, K)), ops.zeros((B, H, max_length, K)))
    cross = {"encoder_sequence": encoder_sequence}
    if precompute_cross:
        cross_cache = layer.cross_attention.compute_key_value(encoder_sequence)
        cross = {"cross_attention_cache": cross_cache}
    for t in range(T):
        step_output, step_self, step_cross, cache = layer(
            decoder_sequence[:, t : t + 1],
            encoder_padding_mask=ENCODER_MASK,
            self_attention_cache=cache,
            self_attention_cache_update_index=t,
            return_attention_scores=True,
            **cross,
        )
        assert tuple(step_self.shape) == (B, H, 1, max_length)
        assert tuple(step_cross.shape) == (B, H, 1, S)
        assert [tuple(c.shape) for c in cache] == [(B, H, max_length, K)] * 2
        np.testing.assert_allclose(
            to_numpy(step_output), output[:, t : t + 1], atol=ATOL
        )
        np.testing.assert_allclose(
            to_numpy(step_self)[..., :T], self_scores[:, :, t : t + 1], atol=ATOL
        )
        np.testing.assert_array_equal(to_numpy(step_self)[..., T:], 0.0)
        np.testing.assert_allclose(
            to_numpy(step_cross), cross_scores[:, :, t : t + 1], atol=ATOL
        )


def test_dropout_only_in_training():
    layer = make_layer(dropout=0.5)
    decoder_sequence, encoder_sequence = inputs()
    inference = to_numpy(layer(decoder_sequence, encoder_sequence))
    np.testing.assert_allclose(
        to_numpy(layer(decoder_sequence, encoder_sequence, training=False)),
        inference,
        atol=ATOL,
    )
    training = to_numpy(layer(decoder_sequence, encoder_sequence, training=True))
    assert not np.allclose(training, inference, atol=1e-3)


def test_model_dim_must_be_divisible_by_num_heads():
    layer = TransformerDecoderLayer(intermediate_dim=F, num_heads=3)
    with pytest.raises(ValueError, match="divisible by `num_heads`"):
        layer.build((B, T, D), (B, S, D))
