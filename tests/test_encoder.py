"""Tests for `keras_mha.encoder.TransformerEncoderLayer`.

Shape legend: B batch, S source length, D model dim, H heads.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_mha.encoder import TransformerEncoderLayer
from tests.layer_test import run_layer_test, to_numpy

B, S, D, H, F = 2, 7, 16, 2, 32
ATOL = 1e-5
# Example 0 has 5 real tokens, example 1 has 3.
PADDING_MASK = np.arange(S)[None, :] < np.array([[5], [3]])  # (B, S)


def random(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def make_layer(**kwargs):
    layer = TransformerEncoderLayer(
        intermediate_dim=F, num_heads=H, bias_initializer="ones", **kwargs
    )
    layer.build((B, S, D))
    return layer


@pytest.mark.parametrize("normalize_first", [True, False])
def test_layer_contract(normalize_first):
    run_layer_test(
        TransformerEncoderLayer,
        {
            "intermediate_dim": F,
            "num_heads": H,
            "dropout": 0.1,
            "normalize_first": normalize_first,
        },
        {"inputs": random(B, S, D), "padding_mask": PADDING_MASK},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=((B, S, D), (B, H, S, S)),
        # 8 attention + 4 feed-forward + 2 x 2 layer norm weights.
        expected_num_trainable_weights=16,
        allow_unchanged_weights=("key_bias",),
    )


def test_pre_ln_and_post_ln_differ():
    x = random(B, S, D)
    pre_ln, post_ln = make_layer(), make_layer(normalize_first=False)
    post_ln.set_weights(pre_ln.get_weights())
    pre_output, post_output = to_numpy(pre_ln(x)), to_numpy(post_ln(x))
    assert np.all(np.isfinite(pre_output)) and np.all(np.isfinite(post_output))
    assert not np.allclose(pre_output, post_output, atol=1e-3)
    # Post-LN ends in a layer norm: every position is normalized.
    np.testing.assert_allclose(post_output.mean(-1), 0.0, atol=1e-4)


@pytest.mark.parametrize("normalize_first", [True, False])
def test_padding_values_do_not_reach_real_positions(normalize_first):
    layer = make_layer(normalize_first=normalize_first)
    x = random(B, S, D)
    changed = np.where(PADDING_MASK[..., None], x, random(B, S, D, seed=1) * 10)
    output, scores = layer(x, padding_mask=PADDING_MASK, return_attention_scores=True)
    changed_output = layer(changed, padding_mask=PADDING_MASK)
    np.testing.assert_allclose(
        to_numpy(changed_output)[PADDING_MASK],
        to_numpy(output)[PADDING_MASK],
        atol=ATOL,
    )
    scores = to_numpy(scores)  # (B, H, S, S)
    key_is_padding = np.broadcast_to(~PADDING_MASK[:, None, None, :], scores.shape)
    assert np.all(scores[key_is_padding] == 0.0)
    # Without the mask the padding does leak in.
    leaked = to_numpy(layer(changed))
    assert not np.allclose(
        leaked[PADDING_MASK], to_numpy(output)[PADDING_MASK], atol=1e-3
    )


def embedded_ids():
    ids = np.random.default_rng(0).integers(1, 20, (B, S)) * PADDING_MASK
    embedding = keras.layers.Embedding(20, D, mask_zero=True)
    embedding.build((B, S))
    return ids.astype("int32"), embedding


def test_implicit_keras_mask_equals_explicit_padding_mask():
    layer = make_layer()
    ids, embedding = embedded_ids()
    inputs = keras.Input((S,), dtype="int32")
    model = keras.Model(inputs, layer(embedding(inputs), return_attention_scores=True))
    implicit_output, implicit_scores = model(ids)
    x = to_numpy(embedding(ids))  # A NumPy copy carries no Keras mask.
    explicit_output, explicit_scores = layer(
        x, padding_mask=ids != 0, return_attention_scores=True
    )
    np.testing.assert_allclose(
        to_numpy(implicit_output), to_numpy(explicit_output), atol=ATOL
    )
    np.testing.assert_allclose(
        to_numpy(implicit_scores), to_numpy(explicit_scores), atol=ATOL
    )


def test_implicit_mask_is_anded_with_explicit_padding_mask():
    layer = make_layer()
    ids, embedding = embedded_ids()
    extra = np.ones((B, S), bool)
    extra[1, 1] = False  # Hide one real token of example 1 as well.
    inputs = keras.Input((S,), dtype="int32")
    outputs = layer(
        embedding(inputs),
        padding_mask=ops.convert_to_tensor(extra),
        return_attention_scores=True,
    )
    model = keras.Model(inputs, outputs)
    _, scores = model(ids)
    x = to_numpy(embedding(ids))
    _, expected = layer(
        x, padding_mask=(ids != 0) & extra, return_attention_scores=True
    )
    np.testing.assert_allclose(to_numpy(scores), to_numpy(expected), atol=ATOL)


def test_attention_mask():
    layer = make_layer()
    x = random(B, S, D)
    attention_mask = np.random.default_rng(0).random((B, S, S)) > 0.5
    attention_mask[:, :, 0] = True
    _, scores = layer(x, attention_mask=attention_mask, return_attention_scores=True)
    scores = to_numpy(scores)
    hidden = np.broadcast_to(~attention_mask[:, None], scores.shape)
    assert np.all(scores[hidden] == 0.0)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=ATOL)


def test_head_mask():
    layer = make_layer()
    x = random(B, S, D)
    output = to_numpy(layer(x))
    all_on = to_numpy(layer(x, head_mask=np.ones(H, "float32")))
    np.testing.assert_allclose(all_on, output, atol=ATOL)
    one_off = to_numpy(layer(x, head_mask=np.array([0.0, 1.0], "float32")))
    assert not np.allclose(one_off, output, atol=1e-3)


def test_dropout_only_in_training():
    layer = make_layer(dropout=0.5)
    x = random(B, S, D)
    inference = to_numpy(layer(x))
    np.testing.assert_allclose(to_numpy(layer(x, training=False)), inference, atol=ATOL)
    assert not np.allclose(to_numpy(layer(x, training=True)), inference, atol=1e-3)


def test_model_dim_must_be_divisible_by_num_heads():
    layer = TransformerEncoderLayer(intermediate_dim=F, num_heads=3)
    with pytest.raises(ValueError, match="divisible by `num_heads`"):
        layer.build((B, S, D))


@pytest.mark.parametrize("layer_class", ["encoder", "decoder"])
@pytest.mark.parametrize(
    "activation_dropout, expected_rate", [(None, 0.3), (0.0, 0.0), (0.1, 0.1)]
)
def test_activation_dropout_sets_the_feedforward_dropout(
    layer_class, activation_dropout, expected_rate
):
    from keras_mha.decoder import TransformerDecoderLayer

    cls = (
        TransformerEncoderLayer if layer_class == "encoder" else TransformerDecoderLayer
    )
    layer = cls(
        intermediate_dim=F,
        num_heads=H,
        dropout=0.3,
        activation_dropout=activation_dropout,
    )
    layer.build((B, S, D))
    assert layer.feedforward.dropout == expected_rate
    # Attention and residual dropout keep `dropout`.
    assert layer.self_attention.dropout == 0.3
    assert layer.feedforward_dropout.rate == 0.3
    restored = cls.from_config(layer.get_config())
    restored.build((B, S, D))
    assert restored.feedforward.dropout == expected_rate


@pytest.mark.parametrize("layer_class", ["encoder", "decoder"])
@pytest.mark.parametrize(
    "argument, value, expected",
    [
        ("num_heads", 0, "expected a positive integer. Received: num_heads=0"),
        ("intermediate_dim", 2.5, "Received: intermediate_dim=2.5"),
        ("dropout", 1.0, r"float in \[0, 1\)\. Received: dropout=1.0"),
        ("activation_dropout", -0.1, "Received: activation_dropout=-0.1"),
    ],
)
def test_invalid_arguments_are_refused_in_the_constructor(
    layer_class, argument, value, expected
):
    from keras_mha.decoder import TransformerDecoderLayer

    cls = (
        TransformerEncoderLayer if layer_class == "encoder" else TransformerDecoderLayer
    )
    arguments = {"intermediate_dim": F, "num_heads": H, argument: value}
    with pytest.raises(ValueError, match=expected):
        cls(**arguments)


def test_encoder_and_decoder_share_their_config():
    from keras_mha.decoder import TransformerDecoderLayer

    arguments = dict(
        intermediate_dim=F,
        num_heads=H,
        dropout=0.1,
        activation_dropout=0.0,
        activation="gelu",
        layer_norm_epsilon=1e-6,
        normalize_first=False,
    )
    encoder = TransformerEncoderLayer(**arguments).get_config()
    decoder = TransformerDecoderLayer(**arguments).get_config()
    for config in (encoder, decoder):
        assert {k: config[k] for k in arguments} == arguments
    assert set(encoder) == set(decoder)


def test_configs_saved_without_activation_dropout_keep_dropout_in_feedforward():
    # Models saved before the argument existed (the shipped ones) have no
    # "activation_dropout" key: their feed-forward dropout stays `dropout`.
    config = make_layer(dropout=0.2).get_config()
    del config["activation_dropout"]
    layer = TransformerEncoderLayer.from_config(config)
    layer.build((B, S, D))
    assert layer.feedforward.dropout == 0.2
