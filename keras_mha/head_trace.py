"""How one attention head computes one row of its weights, with the model's
own layers and weights: the textbook formulas on a real sentence.

For a kind (`"encoder"`, `"decoder"` self-attention or `"cross"`), a layer,
a head and a query position, `trace_head` runs the model's own layers up to
that attention block, then the block's `MultiHeadAttention` with
`return_stages=True` (its own projections and attention code), and returns
every intermediate value of that row:

    x          the block's input at the query (embedding + position in
               layer 0, else the previous block's output)
    x̂          LayerNorm(x) (pre-LN; x itself in a post-LN model)
    q = x̂ W_Q + b_Q               k_j = x̂_j W_K + b_K, v_j = x̂_j W_V + b_V
    q · k_j    per key (and per dimension: q_d k_jd)
    ÷ √d_k     the scaled scores; masked keys (padding, the future) excluded
    softmax    the weights (the row the attention views draw)
    Σ_j w_j v_j                    this head's output, (V,)
    concat(head_1 … head_H) W_O + b_O   the attention output, (D,)
    x + output                     the residual; LayerNorm of it (post-LN)

Keys and values of cross-attention come from the encoder's output (after its
final LayerNorm in a pre-LN model), not normalized again.

Shape legend: S source pieces, T decoder inputs, D model width, H heads,
K = V = D / H per head.
"""

import math

import numpy as np
from keras import ops

from keras_mha.errors import InvalidArgumentError
from keras_mha.masks import padding_mask

KINDS = ("encoder", "decoder", "cross")


def _numpy(x):
    return None if x is None else np.asarray(ops.convert_to_numpy(x))


def trace_head(model, encoder_inputs, decoder_inputs, kind, layer, head, query):
    """The stages of one head's computation for one query; see the module.

    Args:
        model: a `keras_mha.Transformer`.
        encoder_inputs: `(B, S)` source ids, 0 = padding.
        decoder_inputs: `(B, T)` decoder inputs (`<s>`, then the output
            shifted by one), 0 = padding.
        kind: `"encoder"`, `"decoder"` or `"cross"`.
        layer, head: ints.
        query: int, the query position (a source piece for `"encoder"`, a
            decoder input otherwise) in row 0 of the batch.

    Returns:
        A dict of NumPy arrays: `x`, `normalized` `(D,)`; `q` `(K,)`;
        `key_inputs` `(S_k, D)`, `keys` `(S_k, K)`, `values` `(S_k, V)`;
        `products` `(S_k, K)` (q_d k_jd), `dots` `(S_k,)`, `scaled`
        `(S_k,)` (÷ √d_k), `mask` `(S_k,)` bool, `weights` `(S_k,)`;
        `head_output` `(V,)`; `concat` `(H * V,)`; `output`, `residual`,
        `block_output` `(D,)`; `layer_output` `(D,)` (after the layer's
        remaining blocks); the model's inputs of the query's sequence:
        `token_vector` and `position_vector` `(D,)` of the query (their sum
        is layer 0's `x`) and `positions` `(L, D)` every position's vector;
        and the sizes `d_k`, `num_heads`, `normalize_first`.

    Raises:
        InvalidArgumentError: for an unknown kind, layer, head or query.
    """
    _check_head(model, head)
    traced = trace_layer(model, encoder_inputs, decoder_inputs, kind, layer)
    return head_stages(traced, head, query)


def _check_head(model, head):
    if not 0 <= int(head) < model.num_heads:
        raise InvalidArgumentError(
            f"`head={head}` does not exist: each layer has {model.num_heads} heads."
        )


def trace_layer(model, encoder_inputs, decoder_inputs, kind, layer):
    """Every head and every query of one attention block at once: what
    `head_stages` picks one row from (so that a viewer switching heads or
    queries of the block needs no second pass through the model).

    Args: as `trace_head`, without `head` and `query`.

    Returns:
        A dict of NumPy arrays for row 0 of the batch, L queries and S_k
        keys: `x`, `normalized`, `output`, `residual`, `block_output`,
        `token_vectors`, `positions` `(L, D)`, `layer_output` `(L, D)` or
        None; `q` `(L, H, K)` (before the 1/√d_k scaling), `key_inputs`
        `(S_k, D)`, `keys` `(S_k, H, K)`, `values` `(S_k, H, V)`, `mask`
        `(L, S_k)` bool, `weights` `(H, L, S_k)`, `context` `(L, H, V)`
        (each head's output); `kind`; `queries` the real (unpadded) query
        count; `d_k`, `num_heads`, `normalize_first`.

    Raises:
        InvalidArgumentError: for an unknown kind or layer.
    """
    if kind not in KINDS:
        raise InvalidArgumentError(
            f"Received an invalid value for argument `kind`, expected one of "
            f"{KINDS}. Received: kind={kind!r}"
        )
    count = model.num_encoder_layers if kind == "encoder" else model.num_decoder_layers
    if not 0 <= int(layer) < count:
        raise InvalidArgumentError(
            f"`layer={layer}` does not exist: the {kind} has {count} layers."
        )
    encoder_inputs = ops.convert_to_tensor(encoder_inputs, "int32")
    decoder_inputs = ops.convert_to_tensor(decoder_inputs, "int32")
    queries = encoder_inputs if kind == "encoder" else decoder_inputs
    source_mask = padding_mask(encoder_inputs)  # (B, S)
    target_mask = padding_mask(decoder_inputs)  # (B, T)

    if kind == "encoder":
        # The encoder's own layers up to the block.
        x = model.source_embedding(encoder_inputs)  # (B, S, D)
        for encoder_layer in model.encoder_layers[:layer]:
            x = encoder_layer(x, padding_mask=source_mask)
        block = model.encoder_layers[layer]
        attention, norm, value = (
            block.self_attention,
            block.self_attention_layer_norm,
            None,
        )
        masks = dict(query_mask=source_mask, value_mask=source_mask)
    else:
        encoded = model.encode(encoder_inputs)  # (B, S, D), final norm included
        x = model.target_embedding(decoder_inputs)  # (B, T, D)
        for decoder_layer in model.decoder_layers[:layer]:
            x = decoder_layer(
                x,
                encoded,
                decoder_padding_mask=target_mask,
                encoder_padding_mask=source_mask,
            )
        block = model.decoder_layers[layer]
        self_masks = dict(
            query_mask=target_mask, value_mask=target_mask, use_causal_mask=True
        )
        if kind == "decoder":
            attention, norm, value = (
                block.self_attention,
                block.self_attention_layer_norm,
                None,
            )
            masks = self_masks
        else:
            # The cross block's input is the self-attention block's output.
            x, _ = block._residual(
                x,
                lambda y: block.self_attention(y, y, **self_masks),
                block.self_attention_layer_norm,
                block.self_attention_dropout,
                False,
            )
            attention, norm, value = (
                block.cross_attention,
                block.cross_attention_layer_norm,
                encoded,
            )
            masks = dict(query_mask=target_mask, value_mask=source_mask)

    # The model's inputs for the query's sequence: token vectors (scaled
    # embeddings) and position vectors, whose sum is layer 0's x.
    embedding = model.source_embedding if kind == "encoder" else model.target_embedding
    token_vectors = embedding.token_vectors(queries)  # (B, L, D)
    position_vectors = embedding.position_vectors(ops.shape(queries)[1])  # (L, D)
    normalized = norm(x) if block.normalize_first else x  # (B, L, D)
    key_inputs = normalized if value is None else value
    output, stages = attention(normalized, key_inputs, return_stages=True, **masks)
    residual = x + output  # (B, L, D): dropout is off at inference.
    block_output = residual if block.normalize_first else norm(residual)

    # The feed-forward block that ends the layer (after self-attention in
    # the encoder, after cross-attention in the decoder), for the check that
    # the stages rebuild what the model computes.
    layer_output = None
    if kind != "decoder":
        layer_output, _ = block._residual(
            block_output,
            block.feedforward,
            block.feedforward_layer_norm,
            block.feedforward_dropout,
            False,
        )

    # `_attend` scales the queries by 1/√d_k before the dot products (as
    # Keras' layer does); q here is the projection before that scaling.
    q = attention._project(normalized, attention.query_kernel, attention.query_bias)
    keys = _numpy(stages["key"])[0]  # (S_k, H, K)
    mask = stages["mask"]
    L = int(ops.shape(queries)[1])
    mask = (
        np.ones((L, keys.shape[0]), bool)
        if mask is None
        else np.broadcast_to(_numpy(mask), (1, L, keys.shape[0]))[0]
    )
    return {
        "x": _numpy(x)[0],
        "normalized": _numpy(normalized)[0],
        "q": _numpy(q)[0],
        "key_inputs": _numpy(key_inputs)[0],
        "keys": keys,
        "values": _numpy(stages["value"])[0],
        "mask": np.asarray(mask, bool),
        "weights": _numpy(stages["weights"])[0],
        "context": _numpy(stages["context"])[0],
        "output": _numpy(output)[0],
        "residual": _numpy(residual)[0],
        "block_output": _numpy(block_output)[0],
        "layer_output": None if layer_output is None else _numpy(layer_output)[0],
        "token_vectors": _numpy(token_vectors)[0],
        "positions": _numpy(position_vectors),
        "kind": kind,
        "queries": int(np.sum(_numpy(queries)[0] > 0)),
        "d_k": attention.key_dim,
        "num_heads": attention.num_heads,
        "normalize_first": bool(block.normalize_first),
    }


def head_stages(traced, head, query):
    """One head's row from `trace_layer`'s result: `trace_head`'s dict.

    Raises:
        InvalidArgumentError: for an unknown head or query.
    """
    if not 0 <= int(head) < traced["num_heads"]:
        raise InvalidArgumentError(
            f"`head={head}` does not exist: each layer has {traced['num_heads']} heads."
        )
    if not 0 <= int(query) < traced["queries"]:
        raise InvalidArgumentError(
            f"`query={query}` is not a position of the {traced['kind']} queries."
        )
    head, query = int(head), int(query)
    d_k = traced["d_k"]
    q = traced["q"][query, head]  # (K,)
    keys = traced["keys"][:, head]  # (S_k, K)
    products = q[None, :] * keys  # (S_k, K)
    dots = products.sum(-1)  # (S_k,)
    context = traced["context"][query]  # (H, V)
    layer_output = traced["layer_output"]
    return {
        "x": traced["x"][query],
        "normalized": traced["normalized"][query],
        "q": q,
        "key_inputs": traced["key_inputs"],
        "keys": keys,
        "values": traced["values"][:, head],
        "products": products,
        "dots": dots,
        "scaled": dots / math.sqrt(d_k),
        "mask": traced["mask"][query],
        "weights": traced["weights"][head, query],
        "head_output": context[head],
        "concat": context.reshape(-1),
        "output": traced["output"][query],
        "residual": traced["residual"][query],
        "block_output": traced["block_output"][query],
        "layer_output": None if layer_output is None else layer_output[query],
        "token_vector": traced["token_vectors"][query],
        "position_vector": traced["positions"][query],
        "positions": traced["positions"],
        "d_k": d_k,
        "num_heads": traced["num_heads"],
        "normalize_first": traced["normalize_first"],
    }
