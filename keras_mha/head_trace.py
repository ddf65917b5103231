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
    check_layer(model, kind, layer)
    # Only the layers up to this one run.
    return trace_layers(
        model, encoder_inputs, decoder_inputs, kind, layers=int(layer) + 1
    )[int(layer)]


def trace_layers(model, encoder_inputs, decoder_inputs, kind, layers=None, run=None):
    """`trace_layer` for every layer of `kind`, from one pass.

    Args: as `trace_layer`, without `layer`; `layers`: only the first this
        many (default: all); `run`: optionally a compiled
        `trace_tensors(model, encoder_inputs, decoder_inputs, kind)` of
        every layer, taking the two id arrays
        (`keras_mha.Translator.trace_layers`).

    Returns:
        A list, one `trace_layer` dict per layer.
    """
    _check_kind(kind)
    encoder_inputs = np.asarray(encoder_inputs, "int32")
    decoder_inputs = np.asarray(decoder_inputs, "int32")
    if run is None:
        tensors = trace_tensors(model, encoder_inputs, decoder_inputs, kind, layers)
    else:
        tensors = run(encoder_inputs, decoder_inputs)
    arrays = {name: _numpy(value) for name, value in tensors.items()}
    queries = encoder_inputs if kind == "encoder" else decoder_inputs
    block = (model.encoder_layers if kind == "encoder" else model.decoder_layers)[0]
    shared = {
        "mask": arrays["mask"][0],
        "token_vectors": arrays["token_vectors"][0],
        "positions": arrays["positions"],
        "kind": kind,
        "queries": int(np.sum(queries[0] > 0)),
        "d_k": model.hidden_dim // model.num_heads,
        "num_heads": model.num_heads,
        "normalize_first": bool(block.normalize_first),
    }
    return [
        dict(
            {name: arrays[name][n, 0] for name in LAYER_STAGES},
            layer_output=arrays["layer_output"][n, 0]
            if "layer_output" in arrays
            else None,
            **shared,
        )
        for n in range(arrays["x"].shape[0])
    ]


# The stages `trace_tensors` returns per layer (stacked on a first axis).
LAYER_STAGES = (
    "x",
    "normalized",
    "q",
    "key_inputs",
    "keys",
    "values",
    "weights",
    "context",
    "output",
    "residual",
    "block_output",
)


def check_layer(model, kind, layer):
    """Raises `InvalidArgumentError` unless `kind` is a kind and `layer` one
    of its layers in `model`."""
    _check_kind(kind)
    count = model.num_encoder_layers if kind == "encoder" else model.num_decoder_layers
    if not 0 <= int(layer) < count:
        raise InvalidArgumentError(
            f"`layer={layer}` does not exist: the {kind} has {count} layers."
        )


def _check_kind(kind):
    if kind not in KINDS:
        raise InvalidArgumentError(
            f"Received an invalid value for argument `kind`, expected one of "
            f"{KINDS}. Received: kind={kind!r}"
        )


def trace_tensors(model, encoder_inputs, decoder_inputs, kind, layers=None):
    """The tensors behind `trace_layers`: tensor operations only, so that
    the pass compiles (`keras_mha.decoding.compile_search`); `layers`: the
    first this many layers of `kind` (default: all).

    The model's own layers run layer by layer; at each layer the attention
    block of `kind` runs once more, its `MultiHeadAttention` with
    `return_stages=True`, and its stages are kept.

    Returns:
        A dict of tensors, N = layers of `kind`, B the batch, L queries,
        S_k keys: `x`, `normalized`, `output`, `residual`, `block_output`
        `(N, B, L, D)`; `layer_output` `(N, B, L, D)` (not for
        `"decoder"`, whose self-attention block is followed by
        cross-attention); `q` `(N, B, L, H, K)`; `key_inputs` `(N, B, S_k,
        D)`; `keys` `(N, B, S_k, H, K)`; `values` `(N, B, S_k, H, V)`;
        `weights` `(N, B, H, L, S_k)`; `context` `(N, B, L, H, V)`; `mask`
        `(B, L, S_k)` bool; `token_vectors` `(B, L, D)`; `positions` `(L, D)`.
    """
    encoder_inputs = ops.convert_to_tensor(encoder_inputs, "int32")
    decoder_inputs = ops.convert_to_tensor(decoder_inputs, "int32")
    queries = encoder_inputs if kind == "encoder" else decoder_inputs
    source_mask = padding_mask(encoder_inputs)  # (B, S)
    target_mask = padding_mask(decoder_inputs)  # (B, T)
    self_masks = dict(
        query_mask=target_mask, value_mask=target_mask, use_causal_mask=True
    )
    traces = []
    if kind == "encoder":
        x = model.source_embedding(encoder_inputs)  # (B, S, D)
        for block in model.encoder_layers[:layers]:
            masks = dict(query_mask=source_mask, value_mask=source_mask)
            trace = _block_trace(
                block,
                block.self_attention,
                block.self_attention_layer_norm,
                x,
                None,
                masks,
                feedforward=True,
            )
            traces.append(trace)
            x = trace["layer_output"]  # The layer's output: the next input.
    else:
        encoded = model.encode(encoder_inputs)  # (B, S, D), final norm included
        x = model.target_embedding(decoder_inputs)  # (B, T, D)
        for block in model.decoder_layers[:layers]:
            if kind == "decoder":
                traces.append(
                    _block_trace(
                        block,
                        block.self_attention,
                        block.self_attention_layer_norm,
                        x,
                        None,
                        self_masks,
                        feedforward=False,
                    )
                )
                x = block(
                    x,
                    encoded,
                    decoder_padding_mask=target_mask,
                    encoder_padding_mask=source_mask,
                )
                continue
            # The cross block's input is the self-attention block's output.
            y, _ = block._residual(
                x,
                lambda z: block.self_attention(z, z, **self_masks),
                block.self_attention_layer_norm,
                block.self_attention_dropout,
                False,
            )
            masks = dict(query_mask=target_mask, value_mask=source_mask)
            trace = _block_trace(
                block,
                block.cross_attention,
                block.cross_attention_layer_norm,
                y,
                encoded,
                masks,
                feedforward=True,
            )
            traces.append(trace)
            x = trace["layer_output"]
    result = {
        name: ops.stack([t[name] for t in traces], axis=0)
        for name in traces[0]
        if name != "mask"
    }
    result["mask"] = traces[0]["mask"]  # (B, L, S_k), the same in every layer.
    # The model's inputs for the query's sequence: token vectors (scaled
    # embeddings) and position vectors, whose sum is layer 0's x.
    embedding = model.source_embedding if kind == "encoder" else model.target_embedding
    result["token_vectors"] = embedding.token_vectors(queries)  # (B, L, D)
    result["positions"] = embedding.position_vectors(ops.shape(queries)[1])  # (L, D)
    return result


def _block_trace(block, attention, norm, x, value, masks, feedforward):
    """One attention block of `block` at input `x` `(B, L, D)`, keys and
    values from `value` `(B, S_k, D)` (None: the block's normalized input),
    with every stage; `feedforward`: also the feed-forward block after it
    (the layer's output in the encoder and after cross-attention)."""
    normalized = norm(x) if block.normalize_first else x  # (B, L, D)
    key_inputs = normalized if value is None else value  # (B, S_k, D)
    output, stages = attention(normalized, key_inputs, return_stages=True, **masks)
    residual = x + output  # (B, L, D): dropout is off at inference.
    block_output = residual if block.normalize_first else norm(residual)
    # `_attend` scales the queries by 1/√d_k before the dot products (as
    # Keras' layer does); q here is the projection before that scaling.
    q = attention._project(normalized, attention.query_kernel, attention.query_bias)
    batch_size, length = ops.shape(x)[0], ops.shape(x)[1]
    keys_length = ops.shape(key_inputs)[1]
    mask = stages["mask"]
    if mask is None:
        mask = ops.ones((batch_size, length, keys_length), "bool")
    mask = ops.broadcast_to(mask, (batch_size, length, keys_length))  # (B, L, S_k)
    trace = {
        "x": x,
        "normalized": normalized,
        "q": q,  # (B, L, H, K)
        "key_inputs": key_inputs,
        "keys": stages["key"],  # (B, S_k, H, K)
        "values": stages["value"],  # (B, S_k, H, V)
        "mask": mask,
        "weights": stages["weights"],  # (B, H, L, S_k)
        "context": stages["context"],  # (B, L, H, V)
        "output": output,
        "residual": residual,
        "block_output": block_output,
    }
    if feedforward:
        trace["layer_output"], _ = block._residual(
            block_output,
            block.feedforward,
            block.feedforward_layer_norm,
            block.feedforward_dropout,
            False,
        )
    return trace


# The arrays of a `trace_layer` dict by the axes that are queries (Q) and
# keys (K).
_AXES = {
    "x": "Q",
    "normalized": "Q",
    "q": "Q",
    "output": "Q",
    "residual": "Q",
    "block_output": "Q",
    "layer_output": "Q",
    "token_vectors": "Q",
    "positions": "Q",
    "context": "Q",
    "key_inputs": "K",
    "keys": "K",
    "values": "K",
    "mask": "QK",
    "weights": "-QK",  # (H, L, S_k)
}


def cut(traced, queries, keys):
    """A `trace_layer` dict with only its first `queries` queries and `keys`
    keys (the rest padding)."""
    result = dict(traced)
    for name, axes in _AXES.items():
        if result.get(name) is None:
            continue
        index = tuple(
            slice(None, queries if a == "Q" else keys if a == "K" else None)
            for a in axes
        )
        result[name] = result[name][index]
    return result


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
