"""The machine's limit for a workload: the matrix-multiply FLOPs a model
needs, and the fp32 matmul rate this backend reaches in this process.

`translation_flops` counts the multiply-adds (2 FLOPs each) of every matmul
of a `keras_mha.Transformer` for the pieces a translation actually reads and
writes: the encoder over the S source pieces, the cross-attention keys and
values projected once, and for each of the T output pieces (the end piece
included) the decoder's self- and cross-attention (projections, q·k over
the keys so far, the weighted sum of v), its feed-forward block and the
output projection to the V-piece vocabulary. Beam search extends K
hypotheses: its decoder and output terms count K rows for as many steps as
the chosen output has (a lower bound: no search of K hypotheses does less).
Softmax, normalisation and element-wise work are not counted: they are
memory-bound and small beside the matmuls at these sizes.

`matmul_rate` times a compiled fp32 matmul of 256-wide operands (the
model's width) on the active Keras backend, the best of several runs, so
that `seconds / (flops / rate)` says how far a measured time is from what
the matmuls alone would need at that rate in the same process.
"""

import time

import numpy as np


def translation_flops(model, source_pieces, output_pieces, beam_size=1):
    """Matmul FLOPs of one translation (see the module docstring).

    Args:
        model: a `keras_mha.Transformer` (its sizes only).
        source_pieces: S, source pieces the encoder reads.
        output_pieces: T, output pieces written, the end piece included.
        beam_size: K, hypotheses extended at every step.
    """
    D, F = model.hidden_dim, model.intermediate_dim
    V = model.target_vocabulary_size
    S, T, K = int(source_pieces), int(output_pieces), int(beam_size)
    projections = 4 * 2 * D * D  # q, k, v and the output W_O, per token.
    feed_forward = 2 * 2 * D * F
    encoder = model.num_encoder_layers * (
        S * (projections + feed_forward) + 2 * 2 * S * S * D
    )
    # Per decoder layer: cross-attention keys and values once per source
    # piece, then per output piece t (1..T) self-attention over t keys and
    # cross-attention over S.
    per_step = projections + 2 * 2 * D * D + feed_forward + 2 * 2 * S * D
    self_attention = 2 * 2 * D * T * (T + 1) // 2
    decoder = model.num_decoder_layers * (
        S * 2 * 2 * D * D + K * (T * per_step + self_attention)
    )
    output = K * T * 2 * D * V
    return encoder + decoder + output


def training_step_flops(model, batch_size, source_length, target_length):
    """Matmul FLOPs of one training step on a padded `(B, S)` / `(B, T)`
    batch: the teacher-forced forward pass over every position (padding
    included, as it is computed; decoder self-attention over the full
    `T x T` scores, masked after), and twice that for the backward pass
    (the gradients of each matmul's two operands)."""
    D, F = model.hidden_dim, model.intermediate_dim
    V = model.target_vocabulary_size
    B, S, T = int(batch_size), int(source_length), int(target_length)
    projections = 4 * 2 * D * D
    feed_forward = 2 * 2 * D * F
    encoder = model.num_encoder_layers * (
        S * (projections + feed_forward) + 2 * 2 * S * S * D
    )
    decoder = model.num_decoder_layers * (
        S * 2 * 2 * D * D
        + T * (projections + 2 * 2 * D * D + feed_forward)
        + 2 * 2 * T * T * D
        + 2 * 2 * T * S * D
    )
    forward = B * (encoder + decoder + T * 2 * D * V)
    return 3 * forward


def matmul_rate(rows=4096, width=256, columns=1024, repeats=20, dtype="float32"):
    """FLOP/s of a compiled `(rows, width) @ (width, columns)` matmul of
    `dtype` ("float32" or "bfloat16") on the active Keras backend, the best of
    `repeats` timed runs (after one untimed run that compiles it)."""
    import keras

    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, width)).astype("float32")
    b = rng.standard_normal((width, columns)).astype("float32")
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        fn = jax.jit(lambda x, y: x @ y)
        a, b = jax.device_put(a).astype(dtype), jax.device_put(b).astype(dtype)

        def run():
            fn(a, b).block_until_ready()
    elif backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(tf.matmul)
        a, b = tf.cast(tf.constant(a), dtype), tf.cast(tf.constant(b), dtype)

        def run():
            fn(a, b).numpy()
    else:
        raise ValueError(f"No compiled matmul for backend {backend!r}")
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return 2 * rows * width * columns / best


def decoder_loop_rate(model, rows, steps=32, repeats=5, loops=1):
    """fp32 FLOP/s of `steps` decoder steps' matmuls for `rows` rows in one
    compiled loop (`decoding.compile_search`), with weights of the model's
    shapes (random, scaled so that values stay in range); the best of
    `repeats` timed runs after one that compiles. With `loops` > 1, that
    many such loops run at once, each from its own thread (as
    `Translator(streams=...)` runs its searches), and the rate is theirs
    together. See the module docstring."""
    import concurrent.futures

    import keras
    from keras import ops

    from keras_mha.decoding import _argmax, compile_search

    D, F = model.hidden_dim, model.intermediate_dim
    V, N = model.target_vocabulary_size, model.num_decoder_layers
    rng = np.random.default_rng(0)

    def weights(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype("float32")

    layers = [
        [
            weights(D, 3 * D),
            weights(D, D),
            weights(D, D),
            weights(D, D),
            weights(D, F),
            weights(F, D),
        ]
        for _ in range(N)
    ]  # Per layer: q, k, v; W_O; cross q; cross W_O; feed-forward.
    embeddings = weights(V, D)

    def loop(_, layers, embeddings, x):
        def body(_, x):  # (R, D)
            for qkv, out, cross_q, cross_out, up, down in layers:
                q = ops.matmul(x, qkv)[:, :D]  # (R, D)
                x = x + ops.matmul(q, out)
                x = x + ops.matmul(ops.matmul(x, cross_q), cross_out)
                x = ops.tanh(x + ops.matmul(ops.relu(ops.matmul(x, up)), down))
            logits = ops.matmul(x, ops.transpose(embeddings))  # (R, V)
            return x + ops.take(embeddings, _argmax(logits), axis=0)

        return ops.fori_loop(0, steps, body, x)

    run = compile_search(model, loop)
    x = rng.standard_normal((rows, D)).astype("float32")

    def one(_=None):
        keras.ops.convert_to_numpy(run(layers, embeddings, x))

    one()
    best = float("inf")
    with concurrent.futures.ThreadPoolExecutor(loops) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(one, range(loops)))
            best = min(best, time.perf_counter() - start)
    per_step = N * (2 * D * 3 * D + 3 * 2 * D * D + 2 * 2 * D * F) + 2 * D * V
    return loops * steps * rows * per_step / best
