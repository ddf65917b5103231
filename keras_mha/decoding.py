"""Greedy and beam search over the cached decoder, recording attention.

Both searches run the encoder once, project the cross-attention keys and
values once (`Transformer.init_cache`), then one cached `decode_step` per
output token inside a single `ops.while_loop`, so the whole search compiles
into one program (see `SearchModel`). The loop stops when every sequence
(or every beam) has produced the end token.

Shape legend: B batch, K beams, S source length, T output length (the
`max_length` of the search), N layers, H heads, V vocabulary.
"""

import keras
from keras import ops

from keras_mha.masks import padding_mask

NEG_INF = -1e9


def _write_row(history, rows, index, axis):
    """`history[..., index, ...] = rows` along `axis` (a cache-style write)."""
    start = [0] * len(history.shape)
    start[axis] = index
    return ops.slice_update(history, start, rows)


def _next_log_probs(model, tokens, index, rows, caches, encoder_mask, **kwargs):
    """One cached decoder step on the token at `index` of every row.

    Args:
        tokens: `(R, T + 1)` ids written so far; R rows (B, or B*K beams).
        caches: `(self_cache, cross_cache)`.

    Returns:
        `(log_probs, outputs)`: float32 `(R, V)` next-token log-probabilities
        and the rest of `decode_step`'s outputs (updated cache, scores).
    """
    previous = ops.slice(tokens, [0, index], [rows, 1])  # (R, 1)
    outputs = model.decode_step(previous, index, *caches, encoder_mask, **kwargs)
    log_probs = ops.log_softmax(ops.cast(outputs[0][:, 0], "float32"), axis=-1)
    return log_probs, outputs


def greedy_search(
    model,
    encoder_inputs,
    max_length,
    bos_id,
    eos_id,
    head_masks=None,
    return_attention=True,
):
    """Greedy decoding with the key/value cache.

    Args:
        model: a `keras_mha.Transformer`.
        encoder_inputs: `(B, S)` int ids, 0 = padding.
        max_length: int, T, the most output tokens (the end token included).
        bos_id, eos_id: ints.
        head_masks: optional dict of `(N, H)` head multipliers.
        return_attention: bool, record every attention head.

    Returns:
        A dict: `"tokens"` `(B, T)` output ids (0 after the end token),
        `"log_probs"` `(B, T)` log-probability of each output token and, with
        `return_attention`, `"encoder"` `(N_e, B, H, S, S)`, `"decoder"`
        `(N_d, B, H, T, T)` and `"cross"` `(N_d, B, H, T, S)` attention.
    """
    encoder_mask = padding_mask(encoder_inputs)  # (B, S)
    encoded = model.encode(
        encoder_inputs,
        return_attention_scores=return_attention,
        head_masks=head_masks,
    )
    if return_attention:
        encoded, encoder_attention = encoded
    self_cache, cross_cache = model.init_cache(encoded, max_length)
    batch_size = ops.shape(encoder_inputs)[0]
    source_length = ops.shape(encoder_inputs)[1]
    num_layers, num_heads = model.num_decoder_layers, model.num_heads

    tokens = ops.zeros((batch_size, max_length + 1), "int32")  # (B, T + 1)
    tokens = _write_row(tokens, ops.full((batch_size, 1), bos_id, "int32"), 0, 1)
    log_probs = ops.zeros((batch_size, max_length), "float32")  # (B, T)
    finished = ops.zeros((batch_size,), "bool")
    state = [ops.convert_to_tensor(0, "int32"), tokens, log_probs, finished]
    state += [self_cache]
    if return_attention:
        shape = (num_layers, batch_size, num_heads, max_length)
        state += [
            ops.zeros(shape + (max_length,), "float32"),  # (N, B, H, T, T)
            ops.zeros(shape + (source_length,), "float32"),  # (N, B, H, T, S)
        ]

    def cond(index, tokens, log_probs, finished, *rest):
        return ops.logical_and(
            ops.less(index, max_length), ops.logical_not(ops.all(finished))
        )

    def body(index, tokens, log_probs, finished, self_cache, *attention):
        step_log_probs, outputs = _next_log_probs(
            model,
            tokens,
            index,
            batch_size,
            (self_cache, cross_cache),
            encoder_mask,
            return_attention_scores=return_attention,
            head_masks=head_masks,
        )  # (B, V)
        self_cache = outputs[1]
        next_token = ops.cast(ops.argmax(step_log_probs, axis=-1), "int32")  # (B,)
        next_token = ops.where(finished, 0, next_token)
        token_log_prob = ops.take_along_axis(
            step_log_probs, next_token[:, None], axis=-1
        )  # (B, 1)
        token_log_prob = ops.where(finished[:, None], 0.0, token_log_prob)
        tokens = _write_row(tokens, next_token[:, None], index + 1, 1)
        log_probs = _write_row(log_probs, token_log_prob, index, 1)
        finished = ops.logical_or(finished, ops.equal(next_token, eos_id))
        new_state = [index + 1, tokens, log_probs, finished, self_cache]
        if attention:
            decoder_history, cross_history = attention
            decoder_history = _write_row(
                decoder_history, ops.cast(outputs[2], "float32"), index, 3
            )
            cross_history = _write_row(
                cross_history, ops.cast(outputs[3], "float32"), index, 3
            )
            new_state += [decoder_history, cross_history]
        return new_state

    state = ops.while_loop(cond, body, state, maximum_iterations=max_length)
    result = {"tokens": state[1][:, 1:], "log_probs": state[2]}
    if return_attention:
        result.update(
            encoder=ops.stack(encoder_attention, axis=0),  # (N_e, B, H, S, S)
            decoder=state[5],
            cross=state[6],
        )
    return result


def _length_penalty(length, alpha):
    """GNMT length penalty `((5 + length) / 6) ** alpha` (Wu et al., 2016)."""
    return ops.power((5.0 + ops.cast(length, "float32")) / 6.0, alpha)


def beam_search(
    model,
    encoder_inputs,
    max_length,
    bos_id,
    eos_id,
    beam_size=4,
    length_penalty=0.6,
    head_masks=None,
    return_attention=True,
):
    """Beam search with a GNMT length penalty and the key/value cache.

    Hypotheses are ranked by `log P / ((5 + length) / 6) ** length_penalty`;
    a finished hypothesis keeps its score and stays in the beam until better
    ones push it out. The loop stops as soon as, for every input, no live
    beam can still outscore the best finished one (an exact bound, so the
    best hypothesis is the same as with a search to `max_length`).

    Args:
        model, encoder_inputs, max_length, bos_id, eos_id, head_masks,
        return_attention: as in `greedy_search`.
        beam_size: int, K.
        length_penalty: float, alpha (0 = plain log-probability).

    Returns:
        As `greedy_search`, with a beam axis after the batch axis, beams
        sorted best first: `"tokens"` `(B, K, T)`, `"log_probs"` `(B, K, T)`,
        `"scores"` `(B, K)` (normalized), attention `(N, B, K, H, ...)`.
    """
    K = beam_size
    encoder_mask = padding_mask(encoder_inputs)  # (B, S)
    encoded = model.encode(
        encoder_inputs,
        return_attention_scores=return_attention,
        head_masks=head_masks,
    )
    if return_attention:
        encoded, encoder_attention = encoded
    batch_size = ops.shape(encoder_inputs)[0]
    source_length = ops.shape(encoder_inputs)[1]
    flat = batch_size * K
    # Every beam of an input shares its encoder states: repeat them K times.
    encoded = ops.repeat(encoded, K, axis=0)  # (B*K, S, D)
    encoder_mask = ops.repeat(encoder_mask, K, axis=0)  # (B*K, S)
    self_cache, cross_cache = model.init_cache(encoded, max_length)
    num_layers, num_heads = model.num_decoder_layers, model.num_heads

    tokens = ops.zeros((flat, max_length + 1), "int32")  # (B*K, T + 1)
    tokens = _write_row(tokens, ops.full((flat, 1), bos_id, "int32"), 0, 1)
    log_probs = ops.zeros((flat, max_length), "float32")  # (B*K, T)
    # Only the first beam is live at the start, so the K beams differ.
    first = ops.concatenate([ops.zeros((1,)), ops.full((K - 1,), NEG_INF)])
    scores = ops.broadcast_to(first[None], (batch_size, K))  # (B, K) raw log P
    finished = ops.zeros((flat,), "bool")
    lengths = ops.zeros((flat,), "int32")
    state = [ops.convert_to_tensor(0, "int32"), tokens, log_probs, scores]
    state += [finished, lengths, self_cache]
    if return_attention:
        shape = (num_layers, flat, num_heads, max_length)
        state += [
            ops.zeros(shape + (max_length,), "float32"),  # (N, B*K, H, T, T)
            ops.zeros(shape + (source_length,), "float32"),  # (N, B*K, H, T, S)
        ]

    def normalize(scores, lengths):
        """`(B, K)` raw log P and `(B*K,)` lengths -> `(B, K)` ranking scores."""
        lengths = ops.reshape(ops.maximum(lengths, 1), (batch_size, K))
        return scores / _length_penalty(lengths, length_penalty)

    def cond(index, tokens, log_probs, scores, finished, lengths, *rest):
        # An input is done when no live beam can still beat its best
        # finished hypothesis: log P only falls and the penalty is at most
        # that of `max_length`, so `raw / penalty(max_length)` bounds a live
        # beam's final score. The best hypothesis is then the one a search
        # to `max_length` would return; the loop ends when all inputs are done.
        done = ops.reshape(finished, (batch_size, K))  # (B, K)
        final = normalize(scores, lengths)  # (B, K)
        best_finished = ops.max(ops.where(done, final, 2 * NEG_INF), axis=-1)
        best_live = scores / _length_penalty(max_length, length_penalty)
        best_live = ops.max(ops.where(done, 2 * NEG_INF, best_live), axis=-1)
        settled = ops.greater_equal(best_finished, best_live)  # (B,)
        return ops.logical_and(
            ops.less(index, max_length), ops.logical_not(ops.all(settled))
        )

    def body(index, tokens, log_probs, scores, finished, lengths, self_cache, *att):
        step, outputs = _next_log_probs(
            model,
            tokens,
            index,
            flat,
            (self_cache, cross_cache),
            encoder_mask,
            return_attention_scores=return_attention,
            head_masks=head_masks,
        )  # (B*K, V)
        self_cache = outputs[1]
        vocabulary_size = ops.shape(step)[-1]
        # A finished beam has one continuation, padding, at no cost.
        only_padding = ops.where(ops.arange(vocabulary_size) == 0, 0.0, NEG_INF)
        step = ops.where(finished[:, None], only_padding[None], step)  # (B*K, V)
        candidates = ops.reshape(scores, (flat, 1)) + step  # (B*K, V) raw
        new_lengths = ops.where(finished, lengths, index + 1)  # (B*K,)
        normalized = candidates / _length_penalty(new_lengths, length_penalty)[:, None]
        normalized = ops.reshape(normalized, (batch_size, -1))  # (B, K*V)
        _, best = ops.top_k(normalized, K)  # (B, K)
        beam = best // vocabulary_size  # (B, K) which beam each comes from
        next_token = ops.cast(best % vocabulary_size, "int32")  # (B, K)
        origin = ops.reshape(
            ops.arange(batch_size)[:, None] * K + beam, (-1,)
        )  # (B*K,) flat index of the parent beam
        next_token = ops.reshape(next_token, (-1,))  # (B*K,)
        candidates = ops.reshape(candidates, (batch_size, -1))  # (B, K*V)
        scores = ops.take_along_axis(candidates, best, axis=-1)  # (B, K)
        token_log_prob = ops.take_along_axis(
            ops.reshape(step, (batch_size, -1)), best, axis=-1
        )  # (B, K)

        def reorder(x, axis=0):
            return ops.take(x, origin, axis=axis)

        tokens = _write_row(reorder(tokens), next_token[:, None], index + 1, 1)
        log_probs = _write_row(
            reorder(log_probs), ops.reshape(token_log_prob, (-1, 1)), index, 1
        )
        parent_finished = reorder(finished)
        lengths = ops.where(parent_finished, reorder(lengths), index + 1)
        finished = ops.logical_or(parent_finished, ops.equal(next_token, eos_id))
        self_cache = reorder(self_cache, axis=1)  # (N, B*K, 2, T, H, K_d)
        new_state = [index + 1, tokens, log_probs, scores, finished, lengths]
        new_state += [self_cache]
        if att:
            decoder_history = _write_row(
                reorder(att[0], axis=1),
                reorder(ops.cast(outputs[2], "float32"), axis=1),
                index,
                3,
            )
            cross_history = _write_row(
                reorder(att[1], axis=1),
                reorder(ops.cast(outputs[3], "float32"), axis=1),
                index,
                3,
            )
            new_state += [decoder_history, cross_history]
        return new_state

    state = ops.while_loop(cond, body, state, maximum_iterations=max_length)
    tokens, log_probs, scores, lengths = state[1], state[2], state[3], state[5]
    normalized = normalize(scores, lengths)  # (B, K)
    order = ops.argsort(-normalized, axis=-1)  # (B, K) best first
    flat_order = ops.reshape(ops.arange(batch_size)[:, None] * K + order, (-1,))

    def sort(x, axis=0):
        x = ops.take(x, flat_order, axis=axis)
        shape = list(ops.shape(x))
        shape[axis : axis + 1] = [batch_size, K]
        return ops.reshape(x, shape)

    result = {
        "tokens": sort(tokens[:, 1:]),  # (B, K, T)
        "log_probs": sort(log_probs),  # (B, K, T)
        "scores": ops.take_along_axis(normalized, order, axis=-1),  # (B, K)
    }
    if return_attention:
        encoder_attention = ops.stack(encoder_attention, axis=0)  # (N, B, H, S, S)
        result.update(
            encoder=ops.repeat(encoder_attention[:, :, None], K, axis=2),
            decoder=sort(state[7], axis=1),  # (N, B, K, H, T, T)
            cross=sort(state[8], axis=1),  # (N, B, K, H, T, S)
        )
    return result


def greedy_search_uncached(model, encoder_inputs, max_length, bos_id, eos_id):
    """The keras.io examples' decoding: the whole model runs again for every
    new token (no cache), batch by batch. A reference for tests and
    benchmarks, O(T^2) model work instead of O(T).

    Returns:
        `(B, T)` output ids, 0 after the end token (as `greedy_search`).
    """
    batch_size = ops.shape(encoder_inputs)[0]
    decoded = ops.full((batch_size, 1), bos_id, "int32")
    finished = ops.zeros((batch_size,), "bool")
    outputs = []
    for _ in range(max_length):
        logits = model({"encoder_inputs": encoder_inputs, "decoder_inputs": decoded})
        next_token = ops.cast(ops.argmax(logits[:, -1], axis=-1), "int32")
        next_token = ops.where(finished, 0, next_token)
        outputs.append(next_token)
        finished = ops.logical_or(finished, ops.equal(next_token, eos_id))
        if bool(ops.convert_to_numpy(ops.all(finished))):
            break
        decoded = ops.concatenate([decoded, next_token[:, None]], axis=1)
    tokens = ops.stack(outputs, axis=1)
    pad = max_length - ops.shape(tokens)[1]
    return ops.pad(tokens, [[0, 0], [0, pad]])


class SearchModel(keras.Model):
    """Wraps a search so that `predict_on_batch` compiles it (XLA `jit` on
    JAX, `tf.function` on TensorFlow) once per input shape and reuses it.

    Args:
        transformer: the `Transformer` (weights are shared, not copied).
        beam_size: int; 1 selects greedy search.
        max_length: int, T.
        bos_id, eos_id: ints.
        length_penalty: float (beam search).
        return_attention: bool.

    Call arguments:
        inputs: dict with `"encoder_inputs"` `(B, S)` and `"encoder"`,
            `"decoder"`, `"cross"` head masks `(B, N, H)` (the batch axis is
            there because Keras splits inputs along it; all rows are equal).
    """

    def __init__(
        self,
        transformer,
        beam_size,
        max_length,
        bos_id,
        eos_id,
        length_penalty=0.6,
        return_attention=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.transformer = transformer
        self.beam_size = beam_size
        self.max_length = max_length
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.length_penalty = length_penalty
        self.return_attention = return_attention

    def call(self, inputs):
        head_masks = {k: inputs[k][0] for k in ("encoder", "decoder", "cross")}
        common = dict(
            max_length=self.max_length,
            bos_id=self.bos_id,
            eos_id=self.eos_id,
            head_masks=head_masks,
            return_attention=self.return_attention,
        )
        if self.beam_size == 1:
            return greedy_search(self.transformer, inputs["encoder_inputs"], **common)
        return beam_search(
            self.transformer,
            inputs["encoder_inputs"],
            beam_size=self.beam_size,
            length_penalty=self.length_penalty,
            **common,
        )
