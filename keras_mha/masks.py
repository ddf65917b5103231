"""Boolean attention masks, built from `keras.ops` only.

Convention everywhere in `keras_mha`: a mask is boolean and `True` means
"may attend". Padding masks are `(B, S)`; attention masks are `(B, T, S)`.

Shape legend: B batch, T query (target) length, S key (source) length.
"""

from keras import ops


def causal_mask(query_length, key_length, offset=0):
    """Lower-triangular mask: query `t` may attend to keys `s <= t + offset`.

    Built with `arange` comparisons and broadcasting (no `tile` with a
    dynamic batch size), so it traces under JAX, TensorFlow and PyTorch.

    Args:
        query_length: int, number of queries T.
        key_length: int, number of keys S.
        offset: int or scalar tensor, position of the first query. It is
            `S - T` for a full pass and the cache index when decoding.

    Returns:
        A boolean tensor of shape `(1, T, S)`.
    """
    queries = ops.expand_dims(ops.arange(query_length), 1) + offset  # (T, 1)
    keys = ops.expand_dims(ops.arange(key_length), 0)  # (1, S)
    return ops.expand_dims(ops.less_equal(keys, queries), 0)  # (1, T, S)


def and_masks(*masks):
    """Logical AND of the masks that are not `None` (`None` if all are).

    Used to combine an implicit Keras mask with an explicit padding mask.
    """
    result = None
    for mask in masks:
        if mask is None:
            continue
        mask = ops.cast(mask, "bool")
        result = mask if result is None else ops.logical_and(result, mask)
    return result


def merge_masks(
    query_length,
    key_length,
    query_mask=None,
    value_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    causal_offset=None,
):
    """AND every mask that applies to one attention call.

    This is the single place where implicit Keras masks (propagated from an
    `Embedding(mask_zero=True)`) and explicit masks meet.

    Args:
        query_length: int, T.
        key_length: int, S.
        query_mask: optional `(B, T)` padding mask of the queries.
        value_mask: optional `(B, S)` padding mask of the values.
        key_mask: optional `(B, S)` padding mask of the keys (defaults to
            `value_mask`, as in `keras.layers.MultiHeadAttention`).
        attention_mask: optional `(B, T, S)` mask.
        use_causal_mask: bool, add a causal mask.
        causal_offset: position of the first query for the causal mask:
            0 for a full pass (the top-left alignment that
            `keras.layers.MultiHeadAttention` uses), the cache index when
            decoding step by step.

    Returns:
        A boolean `(B, T, S)` (or broadcastable `(1, T, S)`) mask, or `None`
        when no mask applies.
    """
    mask = None
    _and = and_masks
    if query_mask is not None:
        mask = ops.expand_dims(ops.cast(query_mask, "bool"), -1)  # (B, T, 1)
    if value_mask is not None:
        value_mask = ops.expand_dims(ops.cast(value_mask, "bool"), -2)  # (B, 1, S)
        mask = _and(mask, value_mask)
    if key_mask is not None:
        key_mask = ops.expand_dims(ops.cast(key_mask, "bool"), -2)  # (B, 1, S)
        mask = _and(mask, key_mask)
    if use_causal_mask:
        offset = 0 if causal_offset is None else causal_offset
        mask = _and(mask, causal_mask(query_length, key_length, offset))
    if attention_mask is not None:
        mask = _and(mask, ops.cast(attention_mask, "bool"))
    return mask


def padding_mask(token_ids, padding_id=0):
    """`(B, S)` boolean mask that is `True` on real tokens."""
    return ops.not_equal(token_ids, padding_id)


def segment_mask(segments):
    """Sources packed in rows: a token may attend to the tokens of its own
    segment only.

    Args:
        segments: `(B, S)` int, each token's segment id.

    Returns:
        `(mask, positions)`: the `(B, S, S)` boolean attention mask, and
        `(B, S)` int32 each token's position in its segment (the tokens of
        its segment before it).
    """
    segments = ops.cast(segments, "int32")
    mask = ops.equal(segments[:, :, None], segments[:, None, :])  # (B, S, S)
    length = ops.shape(segments)[1]
    before = ops.less(ops.arange(length)[None, :], ops.arange(length)[:, None])
    positions = ops.sum(ops.cast(mask & before[None], "int32"), axis=-1)  # (B, S)
    return mask, positions
