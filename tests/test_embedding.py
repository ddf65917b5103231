"""Tests for `keras_mha.embedding`: token + position embedding.

Shape legend: B batch, T length, D embedding dim, V vocabulary.
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_mha import backend_config, embedding
from keras_mha.embedding import TokenAndPositionEmbedding, sinusoidal_positions
from tests.layer_test import run_layer_test, to_numpy

B, T, D, V = 2, 6, 8, 17
IDS = np.array([[4, 9, 2, 11, 0, 0], [1, 16, 3, 3, 7, 0]], "int32")


def numpy_sinusoids(positions, dim):
    """`[sin(p w_i) ..., cos(p w_i) ...]`, `w_i = 10000 ** (-i / (D/2 - 1))`."""
    half = dim // 2
    frequencies = 10000.0 ** (-np.arange(half) / (half - 1))
    angles = np.asarray(positions, "float64")[:, None] * frequencies[None]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)


def make_layer(**kwargs):
    layer = TokenAndPositionEmbedding(V, 16, D, **kwargs)
    layer.build(IDS.shape)
    return layer


def test_output_shape():
    layer = make_layer()
    assert tuple(layer(IDS).shape) == (B, T, D)
    assert layer.compute_output_shape((B, T)) == (B, T, D)
    assert tuple(layer(keras.KerasTensor((None, None), "int32")).shape) == (
        None,
        None,
        D,
    )


def test_sinusoidal_positions_match_numpy():
    positions = np.arange(0, 40, 3)
    np.testing.assert_allclose(
        to_numpy(sinusoidal_positions(positions, 16)),
        numpy_sinusoids(positions, 16),
        atol=1e-5,
    )
    # Position 0 is [0, ..., 0, 1, ..., 1].
    np.testing.assert_array_equal(
        to_numpy(sinusoidal_positions(np.array([0]), 4)), [[0, 0, 1, 1]]
    )


def test_tokens_are_scaled_by_sqrt_dim_plus_sinusoids():
    layer = make_layer()
    table = to_numpy(layer.embeddings)
    expected = math.sqrt(D) * table[IDS] + numpy_sinusoids(np.arange(T), D)[None]
    np.testing.assert_allclose(to_numpy(layer(IDS)), expected, atol=1e-5)


def test_default_initializer_gives_unit_variance_after_scaling():
    layer = TokenAndPositionEmbedding(1000, 4, 32)
    layer.build((None, None))
    scaled = to_numpy(layer.embeddings) * math.sqrt(32)
    assert abs(scaled.std() - 1.0) < 0.05


def test_learned_positions():
    layer = make_layer(position_embedding="learned")
    assert len(layer.trainable_weights) == 2
    positions = to_numpy(layer.position_embeddings)
    assert positions.shape == (16, D)
    expected = math.sqrt(D) * to_numpy(layer.embeddings)[IDS] + positions[:T][None]
    np.testing.assert_allclose(to_numpy(layer(IDS)), expected, atol=1e-5)


@pytest.mark.parametrize("position_embedding", ["sinusoidal", "learned"])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_start_index_equals_slicing_a_longer_sequence(position_embedding, as_tensor):
    layer = make_layer(position_embedding=position_embedding)
    full = to_numpy(layer(IDS))
    for start in (1, 4):
        index = ops.convert_to_tensor(start, "int32") if as_tensor else start
        part = to_numpy(layer(IDS[:, start:], start_index=index))
        np.testing.assert_allclose(part, full[:, start:], atol=1e-5)
    one_step = to_numpy(layer(IDS[:, 3:4], start_index=3))
    np.testing.assert_allclose(one_step, full[:, 3:4], atol=1e-5)


@pytest.mark.parametrize("position_embedding", ["sinusoidal", "learned"])
def test_a_start_index_per_row_places_each_row_at_its_own_position(position_embedding):
    layer = make_layer(position_embedding=position_embedding)
    full = to_numpy(layer(IDS))
    starts = ops.convert_to_tensor([2, 5], "int32")  # (B,)
    step = to_numpy(layer(np.array([[IDS[0, 2]], [IDS[1, 5]]]), start_index=starts))
    np.testing.assert_allclose(step[0], full[0, 2:3], atol=1e-5)
    np.testing.assert_allclose(step[1], full[1, 5:6], atol=1e-5)


def test_compute_mask():
    np.testing.assert_array_equal(to_numpy(make_layer().compute_mask(IDS)), IDS != 0)
    assert make_layer(mask_zero=False).compute_mask(IDS) is None


def test_mask_propagates_to_downstream_layers():
    ids = keras.Input((T,), dtype="int32")
    embedded = make_layer()(ids)
    pooled = keras.layers.GlobalAveragePooling1D()(embedded)  # Masked mean.
    model = keras.Model(ids, [embedded, pooled])
    embedded, pooled = (to_numpy(x) for x in model(IDS))
    valid = (IDS != 0)[..., None]
    expected = (embedded * valid).sum(1) / valid.sum(1)
    np.testing.assert_allclose(pooled, expected, atol=1e-5)


@pytest.mark.parametrize("custom_gradient", [False, True])
def test_tied_logits(monkeypatch, custom_gradient):
    backends = (keras.backend.backend(),) if custom_gradient else ()
    monkeypatch.setattr(backend_config, "TIED_LOGITS_GRADIENT", backends)
    layer = make_layer()
    hidden = np.random.default_rng(0).normal(size=(B, T, D)).astype("float32")
    logits = to_numpy(layer.logits(hidden))
    assert logits.shape == (B, T, V)
    np.testing.assert_allclose(logits, hidden @ to_numpy(layer.embeddings).T, atol=1e-5)


def gradients(f, *args):
    """Gradients of the scalar `f(*args)` with respect to every argument."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.grad(f, argnums=tuple(range(len(args))))(*args)
    if backend == "tensorflow":
        import tensorflow as tf

        args = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(args)
            value = f(*args)
        return tape.gradient(value, args)
    pytest.skip(f"no gradient helper for {backend}")


def test_tied_logits_gradient_equals_the_automatic_one():
    # The transpose-light gradient of `_tied_logits` against autodiff of the
    # plain product, on random upstream weights.
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(B * T, D)).astype("float32")  # (N, D)
    embeddings = rng.normal(size=(V, D)).astype("float32")  # (V, D)
    upstream = ops.convert_to_tensor(rng.normal(size=(B * T, V)).astype("float32"))

    def plain(h, e):
        return ops.sum(ops.matmul(h, ops.transpose(e)) * upstream)

    def custom(h, e):
        return ops.sum(embedding._tied_logits(h, e) * upstream)

    custom_gradients = gradients(custom, hidden, embeddings)
    for ours, expected in zip(custom_gradients, gradients(plain, hidden, embeddings)):
        np.testing.assert_allclose(to_numpy(ours), to_numpy(expected), atol=1e-4)
    np.testing.assert_allclose(
        to_numpy(custom_gradients[1]), to_numpy(upstream).T @ hidden, atol=1e-4
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocabulary_size": 0}, "vocabulary_size=0"),
        ({"sequence_length": -3}, "sequence_length=-3"),
        ({"embedding_dim": 0}, "embedding_dim=0"),
        ({"embedding_dim": 7}, "`embedding_dim` must be even"),
        ({"position_embedding": "rotary"}, "`position_embedding`"),
    ],
)
def test_invalid_arguments(kwargs, message):
    kwargs = {
        "vocabulary_size": V,
        "sequence_length": 16,
        "embedding_dim": D,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        TokenAndPositionEmbedding(**kwargs)


@pytest.mark.parametrize("position_embedding", ["sinusoidal", "learned"])
def test_layer_contract(position_embedding):
    run_layer_test(
        TokenAndPositionEmbedding,
        {
            "vocabulary_size": V,
            "sequence_length": T,
            "embedding_dim": D,
            "position_embedding": position_embedding,
        },
        IDS,
        expected_output_shape=(B, T, D),
        expected_num_trainable_weights=1 if position_embedding == "sinusoidal" else 2,
    )
