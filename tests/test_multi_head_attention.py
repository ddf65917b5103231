"""The specification of `keras_mha.multi_head_attention.MultiHeadAttention`.

Shape legend: B batch, T query length, S key/value length (S != T in every
cross-attention test), D query features, H heads, K key dim.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_mha import backend_config
from keras_mha.multi_head_attention import MultiHeadAttention
from tests.layer_test import run_layer_test, to_numpy

B, T, S, D, D_V, H, K = 2, 5, 7, 8, 6, 2, 4
ATOL = 1e-5


def random(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def numpy_attention(query, value, weights, mask=None):
    """Reference multi-head attention in NumPy (`mask`: `(B, T, S)` bool)."""
    wq, bq, wk, bk, wv, bv, wo, bo = weights
    q = np.einsum("btd,dhk->bthk", query, wq) + bq  # (B, T, H, K)
    k = np.einsum("bsd,dhk->bshk", value, wk) + bk  # (B, S, H, K)
    v = np.einsum("bsd,dhk->bshk", value, wv) + bv  # (B, S, H, K)
    logits = np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = np.where(mask[:, None], logits, -np.inf)
    logits = logits - logits.max(-1, keepdims=True)
    scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)  # (B,H,T,S)
    context = np.einsum("bhts,bshk->bthk", scores, v)  # (B, T, H, K)
    return np.einsum("bthk,hko->bto", context, wo) + bo, scores


def make_pair(query_dim=D, value_dim=D_V, key_dim=None, seed=0, **kwargs):
    """Keras' MHA and ours, built alike, sharing random weights and biases."""
    kwargs = {"num_heads": H, "key_dim": K, **kwargs}
    query_shape, value_shape = (B, T, query_dim), (B, S, value_dim)
    key_shape = None if key_dim is None else (B, S, key_dim)
    builtin = keras.layers.MultiHeadAttention(**kwargs)
    builtin.build(query_shape, value_shape, key_shape)
    rng = np.random.default_rng(seed)
    builtin.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in builtin.weights]
    )
    ours = MultiHeadAttention(**kwargs)
    ours.build(query_shape, value_shape, key_shape)
    ours.set_weights(builtin.get_weights())
    return ours, builtin


def make_masks():
    """Target and source padding (different per row) and an explicit mask."""
    query_mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], bool)  # (B, T)
    value_mask = np.array([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0, 0]], bool)
    attention_mask = np.random.default_rng(1).random((B, T, S)) > 0.3
    attention_mask[:, :, 0] = True  # Every row keeps a key.
    return query_mask, value_mask, attention_mask


def assert_parity(ours_outputs, builtin_outputs):
    (ours_output, ours_scores), (output, scores) = ours_outputs, builtin_outputs
    np.testing.assert_allclose(to_numpy(ours_output), to_numpy(output), atol=ATOL)
    np.testing.assert_allclose(to_numpy(ours_scores), to_numpy(scores), atol=ATOL)


# ----------------------------------------------------------------- parity
def test_weights_match_keras_in_number_order_and_shape():
    ours, builtin = make_pair(key_dim=5, value_dim=D_V)
    assert [tuple(w.shape) for w in ours.weights] == [
        tuple(w.shape) for w in builtin.weights
    ]
    assert len(ours.weights) == 8
    ours, builtin = make_pair(use_bias=False, value_dim=D_V)
    assert [tuple(w.shape) for w in ours.weights] == [
        tuple(w.shape) for w in builtin.weights
    ]


def test_self_attention_matches_keras():
    ours, builtin = make_pair(value_dim=D)
    x = random(B, T, D)
    assert_parity(
        ours(x, x, return_attention_scores=True),
        builtin(x, x, return_attention_scores=True),
    )


@pytest.mark.parametrize("with_key", [False, True])
def test_cross_attention_matches_keras(with_key):
    key_dim = 3 if with_key else None
    ours, builtin = make_pair(key_dim=key_dim, value_dim=D_V, output_shape=5)
    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    key = random(B, S, 3, seed=3) if with_key else None
    ours_outputs = ours(query, value, key, return_attention_scores=True)
    assert tuple(ours_outputs[0].shape) == (B, T, 5)
    assert tuple(ours_outputs[1].shape) == (B, H, T, S)
    assert_parity(
        ours_outputs, builtin(query, value, key, return_attention_scores=True)
    )


def padded_model(ours, builtin, use_causal_mask=False, attention_mask=None):
    """Both layers fed by `Embedding(mask_zero=True)`: implicit padding masks."""
    target = keras.Input((T,), dtype="int32")
    source = keras.Input((S,), dtype="int32")
    target_embedding = keras.layers.Embedding(11, D, mask_zero=True)
    source_embedding = keras.layers.Embedding(13, D_V, mask_zero=True)
    kwargs = dict(return_attention_scores=True, use_causal_mask=use_causal_mask)
    if attention_mask is not None:
        kwargs["attention_mask"] = ops.convert_to_tensor(attention_mask)
    outputs = []
    for layer in (ours, builtin):
        # Fresh embedding outputs per layer: Keras' MHA deletes the masks of
        # its inputs.
        query, value = target_embedding(target), source_embedding(source)
        outputs += layer(query, value, **kwargs)
    model = keras.Model([target, source], outputs)
    return model, target_embedding, source_embedding


def padded_ids():
    query_mask, value_mask, _ = make_masks()
    rng = np.random.default_rng(2)
    target_ids = rng.integers(1, 11, (B, T)) * query_mask
    source_ids = rng.integers(1, 13, (B, S)) * value_mask
    return target_ids.astype("int32"), source_ids.astype("int32")


def test_padding_masks_through_mask_propagation_match_keras():
    ours, builtin = make_pair()
    model, _, _ = padded_model(ours, builtin)
    target_ids, source_ids = padded_ids()
    output, scores, expected_output, expected_scores = model((target_ids, source_ids))
    assert_parity((output, scores), (expected_output, expected_scores))
    # The masks really applied: padded keys and padded query rows are 0.
    allowed = (target_ids > 0)[:, None, :, None] & (source_ids > 0)[:, None, None, :]
    scores = to_numpy(scores)
    assert np.all(scores[~np.broadcast_to(allowed, scores.shape)] == 0.0)


def test_explicit_attention_mask_matches_keras():
    ours, builtin = make_pair()
    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    attention_mask = make_masks()[2]
    kwargs = dict(attention_mask=attention_mask, return_attention_scores=True)
    assert_parity(ours(query, value, **kwargs), builtin(query, value, **kwargs))


@pytest.mark.parametrize("cross", [False, True])
def test_causal_mask_matches_keras(cross):
    value_dim = D_V if cross else D
    ours, builtin = make_pair(value_dim=value_dim)
    query = random(B, T, D, seed=1)
    value = random(B, S, D_V, seed=2) if cross else query
    kwargs = dict(use_causal_mask=True, return_attention_scores=True)
    assert_parity(ours(query, value, **kwargs), builtin(query, value, **kwargs))


def test_all_masks_together_match_keras():
    ours, builtin = make_pair()
    attention_mask = make_masks()[2]
    model, _, _ = padded_model(
        ours, builtin, use_causal_mask=True, attention_mask=attention_mask
    )
    output, scores, expected_output, expected_scores = model(padded_ids())
    assert_parity((output, scores), (expected_output, expected_scores))


# ---------------------------------------------------- numerical reference
def test_matches_numpy_reference():
    ours, _ = make_pair()
    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    _, _, attention_mask = make_masks()
    output, scores = ours(
        query, value, attention_mask=attention_mask, return_attention_scores=True
    )
    weights = [to_numpy(w) for w in ours.weights]
    expected_output, expected_scores = numpy_attention(
        query, value, weights, attention_mask
    )
    # The reference is float64 past the scores and the outputs reach ~25:
    # float32 rounding alone reached 1.3e-5 there (JAX on an AVX-512 EPYC).
    np.testing.assert_allclose(to_numpy(output), expected_output, rtol=1e-5, atol=ATOL)
    np.testing.assert_allclose(to_numpy(scores), expected_scores, atol=ATOL)


def masked_scores(**kwargs):
    ours, _ = make_pair()
    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    output, scores = ours(query, value, return_attention_scores=True, **kwargs)
    return ours, to_numpy(output), to_numpy(scores)


def test_rows_sum_to_one_and_masked_keys_get_zero_weight():
    query_mask, value_mask, attention_mask = make_masks()
    _, _, scores = masked_scores(
        query_mask=query_mask, value_mask=value_mask, attention_mask=attention_mask
    )
    allowed = query_mask[:, :, None] & value_mask[:, None, :] & attention_mask
    allowed = np.broadcast_to(allowed[:, None], scores.shape)  # (B, H, T, S)
    assert np.all(scores[~allowed] == 0.0)  # Exactly zero, not just small.
    has_key = allowed.any(-1)
    np.testing.assert_allclose(scores.sum(-1)[has_key], 1.0, atol=ATOL)
    np.testing.assert_array_equal(scores.sum(-1)[~has_key], 0.0)


def test_causal_upper_triangle_is_zero():
    _, _, scores = masked_scores(use_causal_mask=True)
    upper = np.triu(np.ones((T, S), bool), k=1)
    assert np.all(scores[..., upper] == 0.0)
    assert np.all(scores[..., ~upper] > 0.0)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=ATOL)


@pytest.mark.parametrize("use_causal_mask", [False, True])
def test_implicit_and_explicit_masks_agree(use_causal_mask):
    ours, builtin = make_pair()
    model, target_embedding, source_embedding = padded_model(
        ours, builtin, use_causal_mask=use_causal_mask
    )
    target_ids, source_ids = padded_ids()
    implicit_output, implicit_scores, _, _ = model((target_ids, source_ids))

    # The same embeddings, with the padding given explicitly.
    query = ops.convert_to_numpy(target_embedding(target_ids))  # Drops the mask.
    value = ops.convert_to_numpy(source_embedding(source_ids))
    query_mask, value_mask = target_ids > 0, source_ids > 0
    explicit = ours(
        query,
        value,
        query_mask=query_mask,
        value_mask=value_mask,
        use_causal_mask=use_causal_mask,
        return_attention_scores=True,
    )
    attention_mask = query_mask[:, :, None] & value_mask[:, None, :]
    as_attention_mask = ours(
        query,
        value,
        attention_mask=attention_mask,
        use_causal_mask=use_causal_mask,
        return_attention_scores=True,
    )
    for output, scores in (explicit, as_attention_mask):
        np.testing.assert_allclose(
            to_numpy(output), to_numpy(implicit_output), atol=ATOL
        )
        np.testing.assert_allclose(
            to_numpy(scores), to_numpy(implicit_scores), atol=ATOL
        )


def test_fully_masked_row_gives_zeros_not_nan():
    attention_mask = np.ones((B, T, S), bool)
    attention_mask[0, 2] = False  # Query 2 of example 0 sees no key.
    ours, output, scores = masked_scores(attention_mask=attention_mask)
    assert np.all(np.isfinite(output)) and np.all(np.isfinite(scores))
    np.testing.assert_array_equal(scores[0, :, 2], 0.0)
    # No context reaches that query: its output is the output bias.
    np.testing.assert_allclose(output[0, 2], to_numpy(ours.output_bias), atol=ATOL)


@pytest.mark.parametrize("force_fused", [False, True])
def test_fused_path_equals_scores_path_on_unmasked_rows(monkeypatch, force_fused):
    if force_fused:  # Run `ops.dot_product_attention` on this backend too.
        monkeypatch.setattr(
            backend_config, "FUSED_ATTENTION", (keras.backend.backend(),)
        )
    ours, _ = make_pair()
    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    query_mask, value_mask, attention_mask = make_masks()
    for kwargs in (
        {},
        {"use_causal_mask": True},
        {"value_mask": value_mask, "attention_mask": attention_mask},
        {"query_mask": query_mask, "value_mask": value_mask},
    ):
        fused = to_numpy(ours(query, value, **kwargs))
        output, scores = ours(query, value, return_attention_scores=True, **kwargs)
        rows = to_numpy(scores).sum(axis=(1, 3)) > 0  # (B, T) rows with a valid key.
        np.testing.assert_allclose(fused[rows], to_numpy(output)[rows], atol=ATOL)
        # Rows with no valid key get no context on both paths.
        np.testing.assert_allclose(fused[~rows], to_numpy(output)[~rows], atol=ATOL)


@pytest.mark.parametrize("use_matmul", [False, True])
def test_matmul_and_einsum_projections_match_keras(monkeypatch, use_matmul):
    # Both ways of projecting (matmul on TensorFlow, einsum elsewhere) on
    # this backend, with every projection size different.
    backends = (keras.backend.backend(),) if use_matmul else ()
    monkeypatch.setattr(backend_config, "MATMUL_PROJECTIONS", backends)
    ours, builtin = make_pair(key_dim=3, value_dim=D_V, output_shape=5)
    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    key = random(B, S, 3, seed=3)
    kwargs = dict(return_attention_scores=True, use_causal_mask=True)
    assert_parity(
        ours(query, value, key, **kwargs), builtin(query, value, key, **kwargs)
    )
    cache = ours.compute_key_value(value, key)  # 2 x (B, H, S, K)
    output, _ = ours(query, None, cache=cache)
    np.testing.assert_allclose(
        to_numpy(output), to_numpy(builtin(query, value, key)), atol=ATOL
    )


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="only TensorFlow traces with unknown batch size and lengths",
)
def test_unknown_batch_size_and_lengths_while_tracing():
    import tensorflow as tf

    ours, builtin = make_pair()

    def spec(features):
        return tf.TensorSpec((None, None, features), "float32")

    @tf.function(input_signature=[spec(D), spec(D_V)])
    def attend(query, value):
        return ours(query, value, return_attention_scores=True)

    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    assert_parity(
        attend(query, value), builtin(query, value, return_attention_scores=True)
    )


# ------------------------------------------------------------- head mask
def test_head_mask():
    ours, _ = make_pair()
    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    output = to_numpy(ours(query, value))

    all_on = to_numpy(ours(query, value, head_mask=np.ones(H, "float32")))
    np.testing.assert_allclose(all_on, output, atol=ATOL)

    all_off = to_numpy(ours(query, value, head_mask=np.zeros(H, "float32")))
    np.testing.assert_allclose(
        all_off, np.broadcast_to(to_numpy(ours.output_bias), all_off.shape), atol=ATOL
    )

    # Switching head 1 off = removing its slice of the output kernel.
    head_1_off = to_numpy(ours(query, value, head_mask=np.array([1.0, 0.0], "float32")))
    ablated, _ = make_pair()
    weights = ablated.get_weights()
    weights[6][1] = 0.0  # attention_output kernel, (H, V, O).
    ablated.set_weights(weights)
    np.testing.assert_allclose(head_1_off, to_numpy(ablated(query, value)), atol=ATOL)
    assert not np.allclose(head_1_off, output, atol=1e-3)

    # A (B, H) mask switches heads per example.
    per_example = np.array([[1.0, 1.0], [1.0, 0.0]], "float32")
    mixed = to_numpy(ours(query, value, head_mask=per_example))
    np.testing.assert_allclose(mixed[0], output[0], atol=ATOL)
    np.testing.assert_allclose(mixed[1], head_1_off[1], atol=ATOL)


# ---------------------------------------------------------------- caches
@pytest.mark.parametrize("max_length", [T, T + 3])
def test_cached_self_attention_step_by_step_equals_full_pass(max_length):
    layer = MultiHeadAttention(num_heads=H, key_dim=K, bias_initializer="ones")
    x = random(B, T, D, seed=1)
    output, scores = layer(x, x, use_causal_mask=True, return_attention_scores=True)
    output, scores = to_numpy(output), to_numpy(scores)

    # A prompt of 2 steps at once, then one step at a time.
    cache = (ops.zeros((B, H, max_length, K)), ops.zeros((B, H, max_length, K)))
    steps = [(0, 2)] + [(t, t + 1) for t in range(2, T)]
    for start, end in steps:
        chunk = x[:, start:end]
        step_output, step_scores, cache = layer(
            chunk,
            chunk,
            cache=cache,
            cache_update_index=start,
            return_attention_scores=True,
        )
        step_scores = to_numpy(step_scores)  # (B, H, end - start, max_length)
        assert step_scores.shape == (B, H, end - start, max_length)
        np.testing.assert_allclose(
            to_numpy(step_output), output[:, start:end], atol=ATOL
        )
        np.testing.assert_allclose(
            step_scores[..., :T], scores[:, :, start:end], atol=ATOL
        )
        np.testing.assert_array_equal(step_scores[..., end:], 0.0)
    # The cache holds the projected keys and values, heads first, and
    # zeros where no step wrote.
    keys = to_numpy(layer._project(x, layer.key_kernel, layer.key_bias))  # (B,T,H,K)
    np.testing.assert_allclose(
        to_numpy(cache[0])[:, :, :T], keys.transpose(0, 2, 1, 3), atol=ATOL
    )
    np.testing.assert_array_equal(to_numpy(cache[1])[:, :, T:], 0.0)


def test_cache_index_may_be_a_tensor():
    layer = MultiHeadAttention(num_heads=H, key_dim=K)
    x = random(B, T, D, seed=1)
    output = to_numpy(layer(x, x, use_causal_mask=True))
    cache = (ops.zeros((B, H, T, K)), ops.zeros((B, H, T, K)))
    for t in range(T):
        index = ops.convert_to_tensor(t, dtype="int32")
        step, cache = layer(
            x[:, t : t + 1], x[:, t : t + 1], cache=cache, cache_update_index=index
        )
        np.testing.assert_allclose(to_numpy(step), output[:, t : t + 1], atol=ATOL)


def test_precomputed_key_value_cache_equals_cross_attention():
    ours, _ = make_pair()
    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    value_mask = make_masks()[1]
    output, scores = ours(
        query, value, value_mask=value_mask, return_attention_scores=True
    )
    cache = ours.compute_key_value(value)
    assert [tuple(c.shape) for c in cache] == [(B, H, S, K)] * 2
    cached_output, cached_scores, same_cache = ours(
        query,
        None,
        value_mask=value_mask,
        cache=cache,
        return_attention_scores=True,
    )
    np.testing.assert_allclose(to_numpy(cached_output), to_numpy(output), atol=ATOL)
    np.testing.assert_allclose(to_numpy(cached_scores), to_numpy(scores), atol=ATOL)
    for returned, given in zip(same_cache, cache):
        np.testing.assert_array_equal(to_numpy(returned), to_numpy(given))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_heads": 0, "key_dim": K}, "num_heads"),
        ({"num_heads": H, "key_dim": -1}, "key_dim"),
        ({"num_heads": H, "key_dim": K, "value_dim": 0}, "value_dim"),
        ({"num_heads": H, "key_dim": K, "dropout": 1.5}, "dropout"),
        ({"num_heads": 2.0, "key_dim": K}, "num_heads"),
    ],
)
def test_invalid_constructor_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`.*{name}="):
        MultiHeadAttention(**kwargs)


def test_wrong_rank_query():
    layer = MultiHeadAttention(num_heads=H, key_dim=K)
    with pytest.raises(ValueError, match="`query` must have rank 3"):
        layer(random(B, D), random(B, S, D))
    layer(random(B, T, D), random(B, S, D))
    with pytest.raises(ValueError, match="`query` must have rank 3"):
        layer(random(B, T, 1, D), random(B, S, D))


def test_feature_size_mismatch_after_build():
    layer = MultiHeadAttention(num_heads=H, key_dim=K)
    layer(random(B, T, D), random(B, S, D_V))
    with pytest.raises(ValueError, match="`query` has 9 features"):
        layer(random(B, T, 9), random(B, S, D_V))
    with pytest.raises(ValueError, match="`value` has 9 features"):
        layer(random(B, T, D), random(B, S, 9))


@pytest.mark.parametrize(
    "name, shape",
    [
        ("attention_mask", (B, S, T)),
        ("attention_mask", (B, T)),
        ("value_mask", (B, T)),
        ("query_mask", (B, S)),
    ],
)
def test_mask_of_wrong_shape(name, shape):
    layer = MultiHeadAttention(num_heads=H, key_dim=K)
    with pytest.raises(ValueError, match=f"`{name}` must have shape"):
        layer(random(B, T, D), random(B, S, D), **{name: np.ones(shape, bool)})


def test_cache_needs_equal_key_and_value_dims():
    layer = MultiHeadAttention(num_heads=H, key_dim=K, value_dim=K + 1)
    layer.build((B, T, D), (B, S, D))
    with pytest.raises(ValueError, match="key_dim == value_dim"):
        layer.compute_key_value(random(B, S, D))


# ------------------------------------------------- config, build, train
def test_layer_contract():
    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    run_layer_test(
        MultiHeadAttention,
        {"num_heads": H, "key_dim": K, "dropout": 0.1, "seed": 3},
        {"query": query, "value": value},
        expected_output_shape=(B, T, D),
        expected_num_trainable_weights=8,
        allow_unchanged_weights=("key_bias",),
    )


def test_layer_contract_with_scores_and_options():
    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    key = random(B, S, 3, seed=3)
    run_layer_test(
        MultiHeadAttention,
        {
            "num_heads": H,
            "key_dim": K,
            "value_dim": 3,
            "output_shape": 5,
            "use_bias": False,
            "kernel_initializer": keras.initializers.TruncatedNormal(seed=1),
            "kernel_regularizer": "l2",
        },
        {"query": query, "value": value, "key": key},
        call_kwargs={"return_attention_scores": True, "use_causal_mask": True},
        expected_output_shape=((B, T, 5), (B, H, T, S)),
        expected_num_trainable_weights=4,
    )


def test_symbolic_call_with_cache():
    layer = MultiHeadAttention(num_heads=H, key_dim=K)
    query = keras.KerasTensor((B, 1, D))
    cache = (keras.KerasTensor((B, H, T, K)), keras.KerasTensor((B, H, T, K)))
    output, scores, new_cache = layer(
        query, query, cache=cache, cache_update_index=0, return_attention_scores=True
    )
    assert tuple(output.shape) == (B, 1, D)
    assert tuple(scores.shape) == (B, H, 1, T)
    assert [tuple(c.shape) for c in new_cache] == [(B, H, T, K)] * 2


def test_dropout_only_in_training():
    query, value = random(B, T, D, seed=1), random(B, S, D_V, seed=2)
    dropped = MultiHeadAttention(num_heads=H, key_dim=K, dropout=0.5, seed=1)
    plain = MultiHeadAttention(num_heads=H, key_dim=K)
    dropped.build(query.shape, value.shape)
    plain.build(query.shape, value.shape)
    plain.set_weights(dropped.get_weights())

    expected = to_numpy(plain(query, value))
    for training in (None, False):
        inference = to_numpy(dropped(query, value, training=training))
        np.testing.assert_allclose(inference, expected, atol=ATOL)
    training_output, scores = dropped(
        query, value, training=True, return_attention_scores=True
    )
    assert not np.allclose(to_numpy(training_output), expected, atol=1e-3)
    # The returned scores are the weights before dropout.
    np.testing.assert_allclose(to_numpy(scores).sum(-1), 1.0, atol=ATOL)
