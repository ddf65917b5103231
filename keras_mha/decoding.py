"""Greedy and beam search over the cached decoder: one loop for both.

The encoder runs once, the cross-attention keys and values are projected
once (`Transformer.init_cache`), then one cached `decode_step` per output
piece runs inside a single `ops.while_loop`, so a whole search compiles into
one program. The loop state is a dict of named tensors; one function
(`Search._step`) runs the decoder step and records what the views need (every
attention head, the `top_k` alternatives, the beam's choices). The searches
differ only in how they choose the next pieces and which hypothesis each row
continues (`Search.choose`): `GreedySearch` takes the most probable piece,
`BeamSearch` keeps the best `K` of `K * V` continuations and reorders every
per-row tensor (the cache included) with one `gather`.

For many inputs with nothing recorded, the bulk searches
(`RefillGreedySearch`, `RefillBeamSearch`) run a loop of their own: a fixed
set of rows, each taking the next waiting input as soon as its own search is
done, so that no row decodes past its end while a batch waits for its
longest output (the same outputs; `REFILL_LAYOUT` declares their state).

A forced prefix (`prefix`, `prefix_lengths`) makes the first pieces of each
output fixed; decoding is free after it. Forcing keeps the model's own
probabilities of the forced pieces, so scores stay log-probabilities.

`compile_search` wraps a search in `jax.jit` or `tf.function` (the one place
in the library that names a backend); `teacher_forced_scores` is the
one-pass counterpart used to score a given translation.

Shape legend: B batch, K beams, R rows (B * K), S source length, T output
length (the `max_length` of the search), N layers, H heads, V vocabulary,
k alternatives per step (`top_k`).
"""

import collections
import math
import numbers

import keras
import numpy as np
from keras import ops

from keras_mha.errors import InvalidArgumentError
from keras_mha.masks import padding_mask

NEG_INF = -1e9


def check_integer(name, value, minimum):
    """Raises a Keras-style `ValueError` unless `value` is an int >= `minimum`
    (0 or 1)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        expected = "a positive" if minimum else "a non-negative"
        raise InvalidArgumentError(
            f"Received an invalid value for argument `{name}`, expected "
            f"{expected} integer. Received: {name}={value!r}"
        )


def check_number(name, value):
    """Raises a Keras-style `ValueError` unless `value` is a finite real
    number (not a bool)."""
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not math.isfinite(value)
    ):
        raise InvalidArgumentError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"finite number. Received: {name}={value!r}"
        )


def _write(history, rows, index, axis):
    """`history[..., index, ...] = rows` along `axis` (a cache-style write)."""
    start = [0] * len(history.shape)
    start[axis] = index
    return ops.slice_update(history, start, rows)


def _column(x, index):
    """`x[:, index]` for a traced `index`: `(R, L)` -> `(R,)`."""
    return ops.slice(x, [0, index], [ops.shape(x)[0], 1])[:, 0]


def _argmax(x, largest=None):
    """`ops.argmax(x, axis=-1)`, the first index of each row's largest value,
    as two plain reductions: the row's maximum (or `largest`, `(R, 1)`, when
    the caller has it), then the smallest index that holds it: `(R, V)` ->
    `(R,)` int32. XLA's CPU backend compiles `argmax` as one reduction over
    (value, index) pairs that does not vectorize: at the searches' `(64,
    6000)` it took about 5x as long as these two on JAX and 1.6x on
    TensorFlow (medians), and in a profile of greedy decoding on JAX it was
    a fifth of the loop's time."""
    if largest is None:
        largest = ops.max(x, axis=-1, keepdims=True)  # (R, 1)
    size = ops.shape(x)[-1]
    ids = ops.arange(size, dtype="int32")[None]  # (1, V)
    return ops.min(ops.where(x == largest, ids, size), axis=-1)  # (R,)


def _log_normalizer(logits):
    """The two terms of `log_softmax(logits) = (logits - largest) - log_sum`
    (the same operations, in the same order, as `ops.log_softmax`): `(R, V)`
    float32 -> `(largest, log_sum)`, `(R, 1)` each.

    A greedy search needs the log-probabilities of a few pieces only (the
    chosen one, the `top_k` alternatives): from these two terms it computes
    them bit for bit as the whole `(R, V)` log-softmax would, with two
    passes over the logits fewer per step (the subtraction that writes
    every log-probability, and the maximum taken again for the argmax).
    """
    largest = ops.max(logits, axis=-1, keepdims=True)  # (R, 1)
    log_sum = ops.log(ops.sum(ops.exp(logits - largest), axis=-1, keepdims=True))
    return largest, log_sum


def _log_probs(logits, normalizer):
    """`(R, V)` or `(R, k)` logits -> their log-probabilities, given the
    rows' `_log_normalizer` of the whole vocabulary."""
    largest, log_sum = normalizer
    return (logits - largest) - log_sum


def _greedy_choice(logits, normalizer, forced=None, forced_token=None):
    """The most probable piece of each row (or its forced one) and its
    log-probability: `(R, V)` float32 logits -> `(R,)` int32, `(R,)` float32.

    The argmax of the logits is that of the log-probabilities (they differ
    by one number per row), except where two pieces' log-probabilities
    round to the same float32 while their logits do not: the logits then
    pick the larger one, the log-probabilities the first."""
    token = _argmax(logits, normalizer[0])  # (R,)
    if forced is not None:
        token = ops.where(forced, forced_token, token)
    picked = ops.take_along_axis(logits, token[:, None], axis=-1)  # (R, 1)
    return token, _log_probs(picked, normalizer)[:, 0]


def _length_penalty(length, alpha):
    """GNMT length penalty `((5 + length) / 6) ** alpha` (Wu et al., 2016)."""
    return ops.power((5.0 + ops.cast(length, "float32")) / 6.0, alpha)


class Search:
    """The decoding loop shared by every search.

    Args:
        max_length: int, T, the most output pieces (the end piece included).
        bos_id, eos_id: ints.
        top_k: int, alternatives recorded per step (0: none).
        return_attention: bool, record every attention head.
        return_beam: bool, record the live hypotheses of every step (beam
            search only).

    Call arguments:
        model: a `keras_mha.Transformer`.
        encoder_inputs: `(B, S)` int ids, 0 = padding.
        head_masks: optional dict of `(N, H)` head multipliers per kind
            (`"encoder"`, `"decoder"`, `"cross"`).
        prefix: optional `(B, P)` int ids forced as the first outputs,
            `P <= T`; row b uses its first `prefix_lengths[b]`.
        prefix_lengths: `(B,)` ints (0: nothing forced); required with
            `prefix`.
        start_finished: optional `(B,)` bool, rows that are finished before
            the first step (batch padding): they output nothing and the loop
            does not wait for them.
        beam_widths: optional `(B,)` ints in 1..K (beam search): input b
            keeps `beam_widths[b]` hypotheses, exactly a search of that beam
            size, in the first slots; its other slots stay empty (never
            live, ranked last). One compiled program then serves every beam
            size up to K.

    Returns:
        A dict of tensors, per input (and per hypothesis for beam search,
        best first): `"tokens"` `(B[, K], T)` output ids (0 after the end
        piece), `"log_probs"` `(B[, K], T)` log-probability of each output
        piece, `"scores"` `(B[, K])` (greedy: log P; beam: normalized by the
        length penalty), `"finished"` `(B[, K])` bool, the output ended
        with the end piece (beam search ranks those that did not last),
        `"steps"` the number of steps run; with
        `return_attention`, `"encoder"` `(N_e, B, H, S, S)` (one map per
        input, shared by its hypotheses), `"decoder"`
        `(N_d, B[, K], H, T, T)`, `"cross"` `(N_d, B[, K], H, T, S)`; with
        `top_k`, `"alternative_ids"` and `"alternative_log_probs"`
        `(B[, K], T, k)`, the `k` most probable pieces of each step's
        distribution, best first; beam search with `return_beam` adds
        `"beam_parents"`, `"beam_tokens"`, `"beam_scores"`, `"beam_finished"`,
        `"beam_live"` `(B, T, K)` (the K hypotheses after each step, parent =
        slot in the previous step, score normalized; `beam_live` is False
        for a slot that never held a hypothesis, e.g. the K - 1 empty ones
        while a prefix is forced) and `"beam_slots"` `(B, K)`, the slot of
        each sorted hypothesis at the last step.
    """

    beam_size = 1

    def __init__(
        self,
        max_length,
        bos_id,
        eos_id,
        top_k=0,
        return_attention=True,
        return_beam=False,
    ):
        check_integer("max_length", max_length, minimum=1)
        check_integer("top_k", top_k, minimum=0)
        self.max_length = max_length
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.top_k = top_k
        self.return_attention = return_attention
        self.return_beam = return_beam

    # ---------------------------------------------------------- overridden
    def initial_scores(self, batch_size):
        """`(R,)` raw log-probabilities the hypotheses start from."""
        return ops.zeros((batch_size * self.beam_size,), "float32")

    def initial_live(self, batch_size):
        """`(R,)` bool rows that hold a hypothesis at the start, or `None`
        when every row always does (one row per input)."""
        return None

    def choose(self, state, logits, normalizer, forced, forced_token):
        """Picks each row's next piece and the row it continues.

        Args:
            state: the loop state (read only).
            logits: `(R, V)` float32 next-piece logits.
            normalizer: their `_log_normalizer`, `(R, 1)` twice:
                `_log_probs(logits, normalizer)` are the log-probabilities.
            forced: `(R,)` bool, the row's next piece is `forced_token`.
            forced_token: `(R,)` int32.

        Returns:
            `(token, token_log_prob, parent, scores)`: `(R,)` int32 next
            pieces, their `(R,)` log-probabilities, the `(R,)` int32 row each
            new row continues (`None`: row r continues row r) and the `(R,)`
            raw log-probabilities of the new hypotheses.
        """
        raise NotImplementedError

    def done(self, state):
        """Scalar bool: every row has finished."""
        return ops.all(state["finished"])

    # ---------------------------------------------------------------- loop
    def __call__(
        self,
        model,
        encoder_inputs,
        head_masks=None,
        prefix=None,
        prefix_lengths=None,
        start_finished=None,
        beam_widths=None,
    ):
        K, T = self.beam_size, self.max_length
        batch_size, source_length = ops.shape(encoder_inputs)
        rows = batch_size * K
        encoded = model.encode(
            encoder_inputs,
            return_attention_scores=self.return_attention,
            head_masks=head_masks,
        )
        encoder_attention = None
        if self.return_attention:
            encoded, encoder_attention = encoded
        encoder_mask = padding_mask(encoder_inputs)  # (B, S)
        if K > 1:
            # Every beam of an input shares its encoder states.
            encoded = ops.repeat(encoded, K, axis=0)  # (R, S, D)
            encoder_mask = ops.repeat(encoder_mask, K, axis=0)  # (R, S)
        # Keys and values, one buffer each per layer, updated in place:
        # N x 2 x (R, H, T, K_d) and N x 2 x (R, H, S, K_d).
        self_cache, cross_cache = model.init_cache(encoded, T)
        N = model.num_decoder_layers
        if prefix is None:
            prefix = ops.zeros((batch_size, 1), "int32")
            prefix_lengths = ops.zeros((batch_size,), "int32")
        # Pad the prefix to T columns so that any step can read its column.
        prefix = ops.cast(prefix, "int32")
        prefix = ops.pad(prefix, [[0, 0], [0, T - ops.shape(prefix)[1]]])  # (B, T)
        prefix_lengths = ops.cast(prefix_lengths, "int32")
        if start_finished is None:
            start_finished = ops.zeros((batch_size,), "bool")
        start_finished = ops.cast(start_finished, "bool")  # (B,)
        if K > 1:
            prefix = ops.repeat(prefix, K, axis=0)  # (R, T)
            prefix_lengths = ops.repeat(prefix_lengths, K, axis=0)  # (R,)
            start_finished = ops.repeat(start_finished, K, axis=0)  # (R,)

        tokens = ops.zeros((rows, T + 1), "int32")  # (R, T + 1)
        state = {
            "index": ops.convert_to_tensor(0, "int32"),
            "tokens": _write(
                tokens,
                ops.full((rows, 1), self.bos_id, "int32"),
                0,
                STATE_LAYOUT["tokens"].step,
            ),
            "log_probs": ops.zeros((rows, T), "float32"),  # (R, T)
            "scores": self.initial_scores(batch_size),  # (R,)
            "finished": start_finished,  # (R,)
            "lengths": ops.zeros((rows,), "int32"),
            "cache": self_cache,  # N x 2 x (R, H, T, K_d)
        }
        live = self.initial_live(batch_size)
        if live is not None:
            state["live"] = live  # (R,)
        if beam_widths is not None and K > 1:
            # Slot k of input b is open while k < beam_widths[b].
            widths = ops.cast(beam_widths, "int32")[:, None]  # (B, 1)
            state["open"] = ops.reshape(ops.arange(K)[None] < widths, (-1,))  # (R,)
        H = model.num_heads
        if self.return_attention:
            state["decoder"] = ops.zeros((N, rows, H, T, T), "float32")
            state["cross"] = ops.zeros((N, rows, H, T, source_length), "float32")
        if self.top_k:
            state["alternative_ids"] = ops.zeros((rows, T, self.top_k), "int32")
            state["alternative_log_probs"] = ops.zeros((rows, T, self.top_k), "float32")
        if self.return_beam and K > 1:
            state["beam_parents"] = ops.zeros((rows, T), "int32")
            state["beam_tokens"] = ops.zeros((rows, T), "int32")
            state["beam_scores"] = ops.zeros((rows, T), "float32")
            state["beam_finished"] = ops.zeros((rows, T), "bool")
            state["beam_live"] = ops.zeros((rows, T), "bool")

        def cond(state):
            return ops.logical_and(
                ops.less(state["index"], T), ops.logical_not(self.done(state))
            )

        def body(state):
            return self._step(
                model,
                state,
                (cross_cache, encoder_mask),
                (prefix, prefix_lengths),
                head_masks,
            )

        state = ops.while_loop(cond, body, state, maximum_iterations=T)
        return self.finalize(state, encoder_attention, batch_size)

    def _step(self, model, state, encoder, forcing, head_masks):
        """One decoder step for every row, then the choice and the records."""
        index = state["index"]
        cross_cache, encoder_mask = encoder
        prefix, prefix_lengths = forcing
        rows = ops.shape(state["tokens"])[0]
        previous = ops.slice(state["tokens"], [0, index], [rows, 1])  # (R, 1)
        outputs = model.decode_step(
            previous,
            index,
            state["cache"],
            cross_cache,
            encoder_mask,
            return_attention_scores=self.return_attention,
            head_masks=head_masks,
        )
        logits = ops.cast(outputs[0][:, 0], "float32")  # (R, V)
        normalizer = _log_normalizer(logits)
        forced = ops.less(index, prefix_lengths)  # (R,)
        forced_token = _column(prefix, index)  # (R,)
        token, token_log_prob, parent, scores = self.choose(
            state, logits, normalizer, forced, forced_token
        )
        if "open" in state:
            # A closed slot holds nothing: no score that could compete.
            scores = ops.where(state["open"], scores, NEG_INF)

        # What each row saw at this step, and what it carries from before.
        step = {"cache": outputs[1]}  # N x 2 x (R, H, T, K_d)
        if self.return_attention:
            step["decoder"] = ops.cast(outputs[2], "float32")  # (N, R, H, 1, T)
            step["cross"] = ops.cast(outputs[3], "float32")  # (N, R, H, 1, S)
        if self.top_k:
            top_logits, top_ids = ops.top_k(logits, self.top_k)  # (R, k)
            top_log_probs = _log_probs(top_logits, normalizer)
            step["alternative_ids"] = ops.cast(top_ids, "int32")[:, None]
            step["alternative_log_probs"] = top_log_probs[:, None]  # (R, 1, k)
        carried = {key: state[key] for key in _ROW_STATE if key in state}
        if parent is not None:
            # Every row continues its parent hypothesis: one gather each.
            carried = {k: _take_rows(k, x, parent) for k, x in carried.items()}
            step = {k: _take_rows(k, x, parent) for k, x in step.items()}
        was_finished = carried["finished"]
        if "live" in carried:
            # A row holds a hypothesis when its parent did and it continues
            # it with a piece it may take (the forced one; padding once
            # finished); every other continuation was ruled out.
            allowed = ops.logical_and(
                ops.logical_or(ops.logical_not(forced), token == forced_token),
                ops.logical_or(ops.logical_not(was_finished), token == 0),
            )
            carried["live"] = ops.logical_and(carried["live"], allowed)
            if "open" in state:
                carried["live"] = ops.logical_and(carried["live"], state["open"])
        token = ops.where(was_finished, 0, token)
        token_log_prob = ops.where(was_finished, 0.0, token_log_prob)
        new_state = {
            "index": index + 1,
            "tokens": _write(
                carried["tokens"],
                token[:, None],
                index + 1,
                STATE_LAYOUT["tokens"].step,
            ),
            "log_probs": _write(
                carried["log_probs"],
                token_log_prob[:, None],
                index,
                STATE_LAYOUT["log_probs"].step,
            ),
            "scores": scores,
            "finished": ops.logical_or(was_finished, ops.equal(token, self.eos_id)),
            "lengths": ops.where(was_finished, carried["lengths"], index + 1),
            "cache": step["cache"],
        }
        if "live" in carried:
            new_state["live"] = carried["live"]
        if "open" in state:
            new_state["open"] = state["open"]
        for key in _STEP_RECORDS:
            if key in state:
                axis = STATE_LAYOUT[key].step
                new_state[key] = _write(carried[key], step[key], index, axis)
        if "beam_parents" in state:
            self._record_beam(state, new_state, parent, token, index)
        return new_state

    def _record_beam(self, state, new_state, parent, token, index):
        raise NotImplementedError

    def finalize(self, state, encoder_attention, batch_size):
        """The loop state -> the result dict (see the class docstring)."""
        result = {
            "tokens": state["tokens"][:, 1:],  # (B, T)
            "log_probs": state["log_probs"],  # (B, T)
            "scores": ops.sum(state["log_probs"], axis=-1),  # (B,)
            "finished": ops.any(ops.equal(state["tokens"], self.eos_id), axis=-1),
            "steps": state["index"],
        }
        for key in _STEP_RECORDS:
            if key in state:
                result[key] = state[key]
        if encoder_attention is not None:
            result["encoder"] = ops.stack(encoder_attention, axis=0)  # (N, B, H, S, S)
        return result


class Axes(collections.namedtuple("Axes", ["row", "step"])):
    """Where a loop-state tensor keeps its rows (hypotheses) and, for a
    history, the axis each step writes one slice along (`None`: not a
    history)."""


# The declared layout of every per-row tensor of the loop state; every
# write, gather and sort reads its axes from here.
STATE_LAYOUT = {
    "tokens": Axes(row=0, step=1),  # (R, T + 1), `<s>` first
    "log_probs": Axes(row=0, step=1),  # (R, T)
    "finished": Axes(row=0, step=None),  # (R,)
    "lengths": Axes(row=0, step=None),  # (R,)
    "live": Axes(row=0, step=None),  # (R,)
    "open": Axes(row=0, step=None),  # (R,) a slot, not a hypothesis: never gathered
    "cache": Axes(row=0, step=None),  # N x 2 x (R, H, T, K_d), `decode_step` writes it
    "decoder": Axes(row=1, step=3),  # (N, R, H, T, T)
    "cross": Axes(row=1, step=3),  # (N, R, H, T, S)
    "alternative_ids": Axes(row=0, step=1),  # (R, T, k)
    "alternative_log_probs": Axes(row=0, step=1),  # (R, T, k)
    "beam_parents": Axes(row=0, step=1),  # (R, T)
    "beam_tokens": Axes(row=0, step=1),  # (R, T)
    "beam_scores": Axes(row=0, step=1),  # (R, T)
    "beam_finished": Axes(row=0, step=1),  # (R, T)
    "beam_live": Axes(row=0, step=1),  # (R, T)
}
# Loop-state tensors that a hypothesis carries from its parent.
_ROW_STATE = (
    "tokens",
    "log_probs",
    "finished",
    "lengths",
    "live",
    "decoder",
    "cross",
    "alternative_ids",
    "alternative_log_probs",
)
# Histories the step writes from what the decoder saw (the beam's own
# records are written by `BeamSearch._record_beam`).
_STEP_RECORDS = ("decoder", "cross", "alternative_ids", "alternative_log_probs")


def _take_rows(key, x, rows):
    """`x` with its rows (hypotheses) replaced by `rows` of it: one gather
    along the row axis of `STATE_LAYOUT[key]` (the cache is a list of
    per-layer `(keys, values)` buffers)."""
    if key == "cache":
        axis = STATE_LAYOUT[key].row
        return [tuple(ops.take(c, rows, axis=axis) for c in layer) for layer in x]
    return ops.take(x, rows, axis=STATE_LAYOUT[key].row)


class GreedySearch(Search):
    """Greedy decoding: the most probable piece at every step.

    Args: as `Search`.

    Example:

    >>> search = GreedySearch(max_length=32, bos_id=2, eos_id=3, top_k=5)
    >>> out = search(model, encoder_inputs)  # doctest: +SKIP
    >>> out["tokens"].shape  # doctest: +SKIP
    (B, 32)
    """

    def choose(self, state, logits, normalizer, forced, forced_token):
        token, token_log_prob = _greedy_choice(
            logits, normalizer, forced, forced_token
        )
        scores = state["scores"] + ops.where(state["finished"], 0.0, token_log_prob)
        return token, token_log_prob, None, scores


class BeamSearch(Search):
    """Beam search with a GNMT length penalty.

    Hypotheses are ranked by `log P / ((5 + length) / 6) ** length_penalty`;
    a finished hypothesis keeps its score and stays in the beam until better
    ones push it out. The loop stops as soon as, for every input, no live
    beam can still outscore the best finished one (an exact bound, so the
    best hypothesis is the same as with a search to `max_length`).

    Args:
        beam_size: int, K.
        length_penalty: float, alpha (0 = plain log-probability).
        **kwargs: as `Search`.
    """

    def __init__(self, beam_size=4, length_penalty=0.6, **kwargs):
        super().__init__(**kwargs)
        check_integer("beam_size", beam_size, minimum=1)
        check_number("length_penalty", length_penalty)
        self.beam_size = beam_size
        self.length_penalty = float(length_penalty)

    def initial_scores(self, batch_size):
        # Only the first beam is live at the start, so the K beams differ.
        K = self.beam_size
        first = ops.concatenate([ops.zeros((1,)), ops.full((K - 1,), NEG_INF)])
        return ops.reshape(ops.broadcast_to(first[None], (batch_size, K)), (-1,))

    def initial_live(self, batch_size):
        """`(R,)` bool: the first beam of each input holds the empty output."""
        first = ops.arange(self.beam_size) == 0  # (K,)
        return ops.reshape(
            ops.broadcast_to(first[None], (batch_size, self.beam_size)), (-1,)
        )

    def normalize(self, scores, lengths):
        """`(R,)` raw log P and lengths -> `(R,)` ranking scores."""
        return scores / _length_penalty(ops.maximum(lengths, 1), self.length_penalty)

    def done(self, state):
        # An input is done when no live beam can still beat its best finished
        # hypothesis: log P (<= 0) only falls, so a live beam's final score is
        # at most `raw / largest penalty` over the lengths it can still end
        # at, index + 1 .. max_length: that of `max_length` for alpha >= 0,
        # of the next length for alpha < 0 (the penalty then falls).
        K = self.beam_size
        finished = ops.reshape(state["finished"], (-1, K))  # (B, K)
        final = ops.reshape(self.normalize(state["scores"], state["lengths"]), (-1, K))
        best_finished = ops.max(ops.where(finished, final, 2 * NEG_INF), axis=-1)
        if self.length_penalty >= 0:
            longest = self.max_length
        else:
            longest = ops.minimum(state["index"] + 1, self.max_length)
        bound = state["scores"] / _length_penalty(longest, self.length_penalty)
        bound = ops.reshape(bound, (-1, K))  # (B, K)
        best_live = ops.max(ops.where(finished, 2 * NEG_INF, bound), axis=-1)
        return ops.all(ops.greater_equal(best_finished, best_live))

    def choose(self, state, logits, normalizer, forced, forced_token):
        K = self.beam_size
        log_probs = _log_probs(logits, normalizer)  # (R, V)
        rows, vocabulary_size = ops.shape(log_probs)
        ids = ops.arange(vocabulary_size)[None]  # (1, V)
        # A forced row may only continue with its forced piece, a finished
        # one only with padding, at no cost.
        step = ops.where(
            ops.logical_and(forced[:, None], ids != forced_token[:, None]),
            NEG_INF,
            log_probs,
        )
        only_padding = ops.where(ids == 0, 0.0, NEG_INF)  # (1, V)
        step = ops.where(state["finished"][:, None], only_padding, step)  # (R, V)
        candidates = state["scores"][:, None] + step  # (R, V) raw log P
        new_lengths = ops.where(state["finished"], state["lengths"], state["index"] + 1)
        normalized = (
            candidates / _length_penalty(new_lengths, self.length_penalty)[:, None]
        )
        normalized = ops.reshape(normalized, (-1, K * vocabulary_size))  # (B, K*V)
        _, best = ops.top_k(normalized, K)  # (B, K)
        beam = best // vocabulary_size  # (B, K) which beam each comes from
        token = ops.reshape(ops.cast(best % vocabulary_size, "int32"), (-1,))  # (R,)
        batch_size = rows // K
        parent = ops.reshape(ops.arange(batch_size)[:, None] * K + beam, (-1,))  # (R,)
        scores = ops.take_along_axis(
            ops.reshape(candidates, (-1, K * vocabulary_size)), best, axis=-1
        )  # (B, K)
        token_log_prob = ops.take_along_axis(
            ops.reshape(step, (-1, K * vocabulary_size)), best, axis=-1
        )  # (B, K)
        return (
            token,
            ops.reshape(token_log_prob, (-1,)),
            ops.cast(parent, "int32"),
            ops.reshape(scores, (-1,)),
        )

    def _record_beam(self, state, new_state, parent, token, index):
        K = self.beam_size
        slot = ops.cast(parent % K, "int32")  # (R,) parent's slot in its input
        normalized = self.normalize(new_state["scores"], new_state["lengths"])
        for key, value in (
            ("beam_parents", slot),
            ("beam_tokens", token),
            ("beam_scores", normalized),
            ("beam_finished", new_state["finished"]),
            ("beam_live", new_state["live"]),
        ):
            new_state[key] = _write(
                state[key], value[:, None], index, STATE_LAYOUT[key].step
            )

    def finalize(self, state, encoder_attention, batch_size):
        K = self.beam_size
        normalized = ops.reshape(
            self.normalize(state["scores"], state["lengths"]), (batch_size, K)
        )
        finished = ops.reshape(
            ops.logical_and(state["finished"], state["live"]), (batch_size, K)
        )
        live = ops.reshape(state["live"], (batch_size, K))
        # Ranked by score within three groups: finished, live but cut off by
        # `max_length` or the early stop, never live. Integer keys: no ties.
        by_score = ops.argsort(-normalized, axis=-1)  # (B, K)
        rank = ops.cast(ops.argsort(by_score, axis=-1), "int32")  # (B, K)
        key = (
            rank
            + K * ops.cast(ops.logical_not(finished), "int32")
            + K * ops.cast(ops.logical_not(live), "int32")
        )
        order = ops.cast(ops.argsort(key, axis=-1), "int32")  # (B, K)
        flat_order = ops.reshape(ops.arange(batch_size)[:, None] * K + order, (-1,))

        def sort(x, axis=0):
            x = ops.take(x, flat_order, axis=axis)
            shape = list(ops.shape(x))
            shape[axis : axis + 1] = [batch_size, K]
            return ops.reshape(x, shape)

        result = {
            "tokens": sort(state["tokens"][:, 1:]),  # (B, K, T)
            "log_probs": sort(state["log_probs"]),  # (B, K, T)
            "scores": ops.take_along_axis(normalized, order, axis=-1),  # (B, K)
            "finished": ops.take_along_axis(finished, order, axis=-1),  # (B, K)
            "steps": state["index"],
        }
        for key in _STEP_RECORDS:
            if key in state:
                # (B, K, T, k) alternatives; (N, B, K, H, T, ...) attention.
                result[key] = sort(state[key], axis=STATE_LAYOUT[key].row)
        if encoder_attention is not None:
            result["encoder"] = ops.stack(encoder_attention, axis=0)  # (N, B, H, S, S)
        if "beam_parents" in state:
            for key in (
                "beam_parents",
                "beam_tokens",
                "beam_scores",
                "beam_finished",
                "beam_live",
            ):
                per_input = ops.reshape(state[key], (batch_size, K, -1))  # (B, K, T)
                result[key] = ops.transpose(per_input, (0, 2, 1))  # (B, T, K)
            result["beam_slots"] = order
        return result


def _slot_state(model, slots, rows, length, bos_id, inputs_cross, inputs_mask):
    """The loop state both bulk searches start from (`REFILL_LAYOUT`): no
    slot active, every row's ring cache and cross-attention keys and values
    zeros (`(rows, H, length, K_d)`, `(rows, H, S, K_d)`), an empty slot g
    pointing at its sink row M + g."""
    M, S = ops.shape(inputs_mask)
    ring = (rows, model.num_heads, length, model.hidden_dim // model.num_heads)
    return {
        "index": ops.convert_to_tensor(0, "int32"),
        "next": ops.convert_to_tensor(0, "int32"),
        "input": M + ops.arange(slots, dtype="int32"),
        "start": ops.zeros((slots,), "int32"),
        "active": ops.zeros((slots,), "bool"),
        "last": ops.full((rows,), bos_id, "int32"),
        "cache": [
            (ops.zeros(ring, model.compute_dtype), ops.zeros(ring, model.compute_dtype))
            for _ in range(model.num_decoder_layers)
        ],  # N x 2 x (R, H, T, K_d), a ring
        "cross": [
            tuple(ops.zeros((rows,) + tuple(ops.shape(c)[1:]), c.dtype) for c in layer)
            for layer in inputs_cross
        ],  # N x 2 x (R, H, S, K_d)
        "encoder_mask": ops.ones((rows, S), "bool"),
    }


def _ring_step(model, state, position, head_masks):
    """One cached decoder step of every row of a bulk search, each at its own
    `(R,)` position: step `index` writes ring column `index % T`, and a row
    sees the columns written since its input started (column c was written
    `age` steps ago). Returns `(R, V)` float32 logits and the updated
    ring."""
    index = state["index"]
    length = ops.shape(state["cache"][0][0])[2]  # T
    age = (index - ops.arange(length, dtype="int32") + length) % length  # (T,)
    logits, cache = model.decode_step(
        state["last"][:, None],
        index % length,
        state["cache"],
        state["cross"],
        state["encoder_mask"],
        head_masks=head_masks,
        positions=position,
        self_attention_key_mask=age[None, :] <= position[:, None],  # (R, T)
    )
    return ops.cast(logits[:, 0], "float32"), cache


def _starts(active, next_input, count, lanes, inputs):
    """Which free slots take the next waiting inputs, at most `lanes`.

    Args:
        active: `(G,)` bool, the slots decoding an input.
        next_input: scalar, the next waiting input; `count`: how many
            inputs there are; `inputs`: M, the rows of the input buffers.

    Returns:
        `(takes, new_input, lane_slots)`: `(G,)` bool, `(G,)` the input a
        slot takes (where it takes one), and `(lanes,)` the free slots in
        order, then the others (the rows one scatter writes).
    """
    slots = ops.shape(active)[0]
    free = ops.logical_not(active)
    rank = ops.cumsum(ops.cast(free, "int32")) - 1  # (G,) among free slots
    takes = free & (rank < lanes) & (rank < count - next_input)
    new_input = ops.minimum(next_input + rank, inputs - 1)
    order = ops.where(free, rank, slots + ops.arange(slots, dtype="int32"))
    lane_slots = ops.cast(ops.argsort(order)[:lanes], "int32")
    return takes, new_input, lane_slots


def _copy_inputs(cross, inputs_cross, lane_rows, lane_inputs, lane_takes):
    """The rows' cross-attention keys and values with `lane_rows` replaced by
    those of `lane_inputs` where `lane_takes`: one gather and one scatter of
    the lanes per buffer, N_d x 2 x `(R, H, S, K_d)`."""
    copied = []
    for layer, layer_inputs in zip(cross, inputs_cross):
        pair = []
        for c, every in zip(layer, layer_inputs):  # (R, H, S, K), (M, H, S, K)
            fresh = ops.take(every, lane_inputs, axis=0)  # (F, H, S, K)
            kept = ops.take(c, lane_rows, axis=0)
            chosen = ops.where(lane_takes[:, None, None, None], fresh, kept)
            pair.append(ops.scatter_update(c, lane_rows[:, None], chosen))
        copied.append(tuple(pair))
    return copied


def _stream(search, model, state, inputs_cross, inputs_mask, count, head_masks):
    """A bulk search's loop: every slot takes an input, then steps (each
    followed by new inputs for the slots now free) until no input waits and
    no slot is active."""
    state = search._refill(state, inputs_cross, inputs_mask, count, search.slots)

    def cond(state):
        return ops.logical_or(ops.less(state["next"], count), ops.any(state["active"]))

    def body(state):
        state = search._step(model, state, head_masks)
        return search._refill(state, inputs_cross, inputs_mask, count, search.lanes)

    return ops.while_loop(cond, body, state)


class RefillGreedySearch:
    """Greedy decoding of many inputs through a fixed set of R rows: a row
    whose output ends takes the next waiting input at the next step, so no
    row decodes past its own end while others go on (in `GreedySearch` a
    batch runs as many steps as its longest output, and at 64 inputs a
    third of its row-steps are rows that already ended).

    Rows are then at different positions of their outputs. They share one
    self-attention cache of T columns used as a ring: step `i` writes
    column `i mod T`, and each row sees the columns written since its input
    started (the keys carry their positions from the embedding, so their
    order in the cache does not matter). Every input is encoded first, in
    its own batch (`encode_inputs`); a row that takes an input copies its
    cross-attention keys and values in (at most `lanes` rows per step, one
    scatter each).

    The same tokens as `GreedySearch` with `max_length = T` on each input
    (to float rounding: rows sum their attention over different columns
    and batch mates). No prefix and no attention records: this is the
    bulk search.

    Args:
        slots: int, R rows decoded at every step.
        max_length: int, T, the most output pieces of an input (the end
            piece included), and the columns of the self-attention cache.
        bos_id, eos_id: ints.
        lanes: int, the most rows that take a new input at one step
            (default `R // 4`; the first fill takes R at once).
        top_k: int, alternatives recorded per step (0: none).

    Call arguments:
        model: a `keras_mha.Transformer`.
        inputs_cross: every input's cross-attention keys and values, N_d
            `(keys, values)` pairs of `(M, H, S, K_d)` (`encode_inputs`,
            batch by batch).
        inputs_mask: `(M, S)` bool, the inputs' source padding masks.
        count: scalar int, decode the first `count` inputs (the others are
            padding of a bucketed M).
        head_masks: optional dict of `(N, H)` head multipliers per kind.

    Returns:
        A dict: `"tokens"` `(M, T)` output ids (0 after the end piece),
        `"log_probs"` `(M, T)`, `"scores"` `(M,)` log P, `"finished"`
        `(M,)` bool (ended with the end piece), `"steps"` the steps run;
        with `top_k`, `"alternative_ids"` and `"alternative_log_probs"`
        `(M, T, k)`, as `GreedySearch`'s.

    The loop state (`REFILL_LAYOUT` declares it): per row `"input"`,
    `"start"`, `"last"`, `"active"`, the ring `"cache"` and the row's
    `"cross"` keys and values and `"encoder_mask"`; per input (M rows, then
    a sink row per row, where an empty row writes) the outputs.
    """

    def __init__(self, slots, max_length, bos_id, eos_id, lanes=None, top_k=0):
        check_integer("slots", slots, minimum=1)
        check_integer("max_length", max_length, minimum=1)
        check_integer("top_k", top_k, minimum=0)
        lanes = max(1, slots // 4) if lanes is None else lanes
        check_integer("lanes", lanes, minimum=1)
        self.slots = slots
        self.max_length = max_length
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.lanes = min(lanes, slots)
        self.top_k = top_k

    def __call__(self, model, inputs_cross, inputs_mask, count, head_masks=None):
        R, T = self.slots, self.max_length
        inputs_mask = ops.cast(inputs_mask, "bool")  # (M, S)
        M = ops.shape(inputs_mask)[0]
        count = ops.cast(count, "int32")
        state = {
            **_slot_state(model, R, R, T, self.bos_id, inputs_cross, inputs_mask),
            "tokens": ops.zeros((M + R, T), "int32"),  # + a sink row per row
            "log_probs": ops.zeros((M + R, T), "float32"),
        }
        if self.top_k:
            k = self.top_k
            state["alternative_ids"] = ops.zeros((M + R, T, k), "int32")
            state["alternative_log_probs"] = ops.zeros((M + R, T, k), "float32")
        state = _stream(
            self, model, state, inputs_cross, inputs_mask, count, head_masks
        )
        tokens = state["tokens"][:M]
        log_probs = state["log_probs"][:M]
        result = {
            "tokens": tokens,  # (M, T)
            "log_probs": log_probs,  # (M, T)
            "scores": ops.sum(log_probs, axis=-1),  # (M,)
            "finished": ops.any(ops.equal(tokens, self.eos_id), axis=-1),
            "steps": state["index"],
        }
        if self.top_k:
            for key in ("alternative_ids", "alternative_log_probs"):
                result[key] = state[key][:M]  # (M, T, k)
        return result

    def _refill(self, state, inputs_cross, inputs_mask, count, lanes):
        """Gives the next waiting inputs to the first `lanes` free rows."""
        M = ops.shape(inputs_mask)[0]
        takes, new_input, lane_rows = _starts(
            state["active"], state["next"], count, lanes, M
        )
        cross = _copy_inputs(
            state["cross"],
            inputs_cross,
            lane_rows,
            ops.take(new_input, lane_rows),
            ops.take(takes, lane_rows),
        )
        encoder_mask = ops.where(
            takes[:, None],
            ops.take(inputs_mask, new_input, axis=0),
            state["encoder_mask"],
        )  # (R, S)
        return {
            **state,
            "next": state["next"] + ops.sum(ops.cast(takes, "int32")),
            "input": ops.where(takes, new_input, state["input"]),
            "start": ops.where(takes, state["index"], state["start"]),
            "last": ops.where(takes, self.bos_id, state["last"]),
            "active": state["active"] | takes,
            "cross": cross,
            "encoder_mask": encoder_mask,
        }

    def _step(self, model, state, head_masks):
        """One decoder step of every row, at each row's own position."""
        R, T = self.slots, self.max_length
        M = ops.shape(state["tokens"])[0] - R
        index = state["index"]
        rows = ops.arange(R, dtype="int32")
        position = ops.clip(index - state["start"], 0, T - 1)  # (R,)
        logits, cache = _ring_step(model, state, position, head_masks)  # (R, V)
        normalizer = _log_normalizer(logits)
        token, token_log_prob = _greedy_choice(logits, normalizer)  # (R,)
        active = state["active"]
        # Each row writes its input's output (an empty row its sink row).
        out_row = ops.where(active, state["input"], M + rows)
        where = ops.stack([out_row, position], axis=-1)  # (R, 2)
        ended = ops.logical_or(ops.equal(token, self.eos_id), position + 1 >= T)
        new_state = {
            **state,
            "index": index + 1,
            "last": token,
            "active": ops.logical_and(active, ops.logical_not(ended)),
            "cache": cache,
            "tokens": ops.scatter_update(state["tokens"], where, token),
            "log_probs": ops.scatter_update(state["log_probs"], where, token_log_prob),
        }
        if self.top_k:
            top_logits, top_ids = ops.top_k(logits, self.top_k)  # (R, k)
            top_log_probs = _log_probs(top_logits, normalizer)
            for key, value in (
                ("alternative_ids", ops.cast(top_ids, "int32")),
                ("alternative_log_probs", top_log_probs),
            ):
                new_state[key] = ops.scatter_update(state[key], where, value)
        return new_state


class RefillBeamSearch:
    """Beam search of many inputs through a fixed set of G inputs at a time
    (R = G * K rows): an input whose search is done hands its K rows to the
    next waiting input at the next step, as `RefillGreedySearch` does for
    rows. An input is done when no live hypothesis can still outscore its
    best finished one (`BeamSearch`'s exact bound) or at `max_length`; its
    best hypothesis is then written out.

    The same best hypothesis as `BeamSearch` with `max_length = T` on each
    input (to float rounding). No prefix, no records, one hypothesis per
    input: the bulk search.

    Args:
        slots: int, G inputs decoded together.
        beam_size: int, K.
        length_penalty: float, GNMT alpha.
        max_length, bos_id, eos_id, lanes: as `RefillGreedySearch` (lanes
            count inputs: at most `lanes` inputs start at one step).

    Call arguments: as `RefillGreedySearch`.

    Returns:
        A dict: `"tokens"` `(M, T)` the best hypothesis' ids (0 after the
        end piece), `"log_probs"` `(M, T)`, `"scores"` `(M,)` normalized by
        the length penalty, `"finished"` `(M,)` bool, `"steps"`.
    """

    def __init__(
        self,
        slots,
        beam_size,
        max_length,
        bos_id,
        eos_id,
        length_penalty=0.6,
        lanes=None,
    ):
        check_integer("slots", slots, minimum=1)
        check_integer("beam_size", beam_size, minimum=1)
        check_integer("max_length", max_length, minimum=1)
        check_number("length_penalty", length_penalty)
        lanes = max(1, slots // 4) if lanes is None else lanes
        check_integer("lanes", lanes, minimum=1)
        self.slots = slots
        self.beam_size = beam_size
        self.max_length = max_length
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.length_penalty = float(length_penalty)
        self.lanes = min(lanes, slots)

    def normalize(self, scores, lengths):
        return scores / _length_penalty(ops.maximum(lengths, 1), self.length_penalty)

    def __call__(self, model, inputs_cross, inputs_mask, count, head_masks=None):
        G, K, T = self.slots, self.beam_size, self.max_length
        R = G * K
        inputs_mask = ops.cast(inputs_mask, "bool")  # (M, S)
        M = ops.shape(inputs_mask)[0]
        count = ops.cast(count, "int32")
        state = {
            **_slot_state(model, G, R, T, self.bos_id, inputs_cross, inputs_mask),
            # Per hypothesis (R,), K consecutive rows per input.
            "scores": ops.zeros((R,), "float32"),  # raw log P
            "finished": ops.zeros((R,), "bool"),
            "lengths": ops.zeros((R,), "int32"),
            "live": ops.zeros((R,), "bool"),
            "history": ops.zeros((R, T), "int32"),  # its pieces so far
            "history_log_probs": ops.zeros((R, T), "float32"),
            # The best hypothesis of each input (+ a sink row per input slot).
            "tokens": ops.zeros((M + G, T), "int32"),
            "log_probs": ops.zeros((M + G, T), "float32"),
            "best_scores": ops.zeros((M + G,), "float32"),
            "best_finished": ops.zeros((M + G,), "bool"),
        }
        state = _stream(
            self, model, state, inputs_cross, inputs_mask, count, head_masks
        )
        return {
            "tokens": state["tokens"][:M],  # (M, T)
            "log_probs": state["log_probs"][:M],  # (M, T)
            "scores": state["best_scores"][:M],  # (M,)
            "finished": state["best_finished"][:M],  # (M,)
            "steps": state["index"],
        }

    def _refill(self, state, inputs_cross, inputs_mask, count, lanes):
        """Gives the next waiting inputs to the first `lanes` free slots;
        their K rows start from the empty output (the first beam live)."""
        G, K = self.slots, self.beam_size
        M = ops.shape(inputs_mask)[0]
        takes, new_input, lane_groups = _starts(
            state["active"], state["next"], count, lanes, M
        )
        lane_rows = ops.reshape(
            lane_groups[:, None] * K + ops.arange(K, dtype="int32")[None], (-1,)
        )  # (F * K,)
        cross = _copy_inputs(
            state["cross"],
            inputs_cross,
            lane_rows,
            ops.repeat(ops.take(new_input, lane_groups), K),
            ops.repeat(ops.take(takes, lane_groups), K),
        )
        row_takes = ops.repeat(takes, K)  # (R,)
        first = ops.tile(ops.arange(K) == 0, (G,))  # (R,) the first beam
        row_inputs = ops.repeat(new_input, K)  # (R,)
        return {
            **state,
            "next": state["next"] + ops.sum(ops.cast(takes, "int32")),
            "input": ops.where(takes, new_input, state["input"]),
            "start": ops.where(takes, state["index"], state["start"]),
            "active": state["active"] | takes,
            "last": ops.where(row_takes, self.bos_id, state["last"]),
            "scores": ops.where(
                row_takes, ops.where(first, 0.0, NEG_INF), state["scores"]
            ),
            "finished": ops.where(row_takes, False, state["finished"]),
            "lengths": ops.where(row_takes, 0, state["lengths"]),
            "live": ops.where(row_takes, first, state["live"]),
            "history": ops.where(row_takes[:, None], 0, state["history"]),
            "history_log_probs": ops.where(
                row_takes[:, None], 0.0, state["history_log_probs"]
            ),
            "cross": cross,
            "encoder_mask": ops.where(
                row_takes[:, None],
                ops.take(inputs_mask, row_inputs, axis=0),
                state["encoder_mask"],
            ),  # (R, S)
        }

    def _step(self, model, state, head_masks):
        """One decoder step of every row, the choice of each input's K best
        continuations, and the best hypothesis of every input now done."""
        G, K, T = self.slots, self.beam_size, self.max_length
        M = ops.shape(state["tokens"])[0] - G
        index = state["index"]
        position = ops.clip(index - state["start"], 0, T - 1)  # (G,)
        row_position = ops.repeat(position, K)  # (R,)
        logits, cache = _ring_step(model, state, row_position, head_masks)
        # An input's K best continuations are among its hypotheses' K best
        # pieces each (a row's pieces share its score and length penalty):
        # K candidates per row instead of V, in the same order (row by row,
        # then best first, as the flat top K over K x V ranks them).
        top_logits, top_ids = ops.top_k(logits, K)  # (R, K)
        top_log_probs = _log_probs(top_logits, _log_normalizer(logits))
        # A finished hypothesis may only continue with padding, at no cost:
        # its K best are piece 0, then 1, 2, ... at NEG_INF.
        first = ops.arange(K, dtype="int32")[None]  # (1, K)
        finished = state["finished"][:, None]
        step = ops.where(finished, ops.where(first == 0, 0.0, NEG_INF), top_log_probs)
        step_ids = ops.where(finished, first, ops.cast(top_ids, "int32"))  # (R, K)
        candidates = state["scores"][:, None] + step  # (R, K)
        new_lengths = ops.where(state["finished"], state["lengths"], row_position + 1)
        normalized = (
            candidates / _length_penalty(new_lengths, self.length_penalty)[:, None]
        )
        _, best = ops.top_k(ops.reshape(normalized, (G, K * K)), K)  # (G, K)
        parent = ops.reshape(ops.arange(G)[:, None] * K + best // K, (-1,))  # (R,)
        parent = ops.cast(parent, "int32")

        def pick(x):  # (R, K) -> the chosen (R,)
            return ops.reshape(
                ops.take_along_axis(ops.reshape(x, (G, K * K)), best, axis=-1), (-1,)
            )

        token = pick(step_ids)  # (R,)
        scores = pick(candidates)
        token_log_prob = pick(step)
        was_finished = ops.take(state["finished"], parent)
        live = ops.logical_and(
            ops.take(state["live"], parent),
            ops.logical_or(ops.logical_not(was_finished), token == 0),
        )
        token = ops.where(was_finished, 0, token)
        token_log_prob = ops.where(was_finished, 0.0, token_log_prob)
        at = ops.arange(T, dtype="int32")[None] == row_position[:, None]  # (R, T)
        history = ops.where(at, token[:, None], ops.take(state["history"], parent, 0))
        history_log_probs = ops.where(
            at,
            token_log_prob[:, None],
            ops.take(state["history_log_probs"], parent, axis=0),
        )
        finished = ops.logical_or(was_finished, ops.equal(token, self.eos_id))
        lengths = ops.where(
            was_finished, ops.take(state["lengths"], parent), row_position + 1
        )
        cache = [tuple(ops.take(c, parent, axis=0) for c in layer) for layer in cache]

        # Done: no live hypothesis can still beat the best finished one (the
        # bound of `BeamSearch.done`, per input), or the output limit.
        final = ops.reshape(self.normalize(scores, lengths), (G, K))
        ended = ops.reshape(finished, (G, K))
        best_finished = ops.max(ops.where(ended, final, 2 * NEG_INF), axis=-1)
        if self.length_penalty >= 0:
            longest = T
        else:
            longest = ops.minimum(position + 2, T)[:, None]
        bound = ops.reshape(scores, (G, K)) / _length_penalty(
            longest, self.length_penalty
        )
        best_live = ops.max(ops.where(ended, 2 * NEG_INF, bound), axis=-1)
        done = ops.logical_or(
            ops.greater_equal(best_finished, best_live), position + 1 >= T
        )
        done = ops.logical_and(done, state["active"])  # (G,)
        # Each input's best, ranked as `BeamSearch.finalize` ranks: finished
        # (and live) first, then live, then never live; by score within.
        finished_live = ops.logical_and(ended, ops.reshape(live, (G, K)))
        by_score = ops.argsort(-final, axis=-1)  # (G, K)
        rank = ops.cast(ops.argsort(by_score, axis=-1), "int32")
        key = (
            rank
            + K * ops.cast(ops.logical_not(finished_live), "int32")
            + K * ops.cast(ops.logical_not(ops.reshape(live, (G, K))), "int32")
        )
        best_row = ops.arange(G, dtype="int32") * K + ops.cast(
            ops.argmin(key, axis=-1), "int32"
        )
        out_row = ops.where(done, state["input"], M + ops.arange(G, dtype="int32"))
        written = {}
        for key_name, value in (
            ("tokens", ops.take(history, best_row, axis=0)),
            ("log_probs", ops.take(history_log_probs, best_row, axis=0)),
            ("best_scores", ops.take(ops.reshape(final, (-1,)), best_row)),
            ("best_finished", ops.take(ops.reshape(finished_live, (-1,)), best_row)),
        ):
            written[key_name] = ops.scatter_update(
                state[key_name], out_row[:, None], value
            )
        return {
            **state,
            **written,
            "index": index + 1,
            "active": ops.logical_and(state["active"], ops.logical_not(done)),
            "last": token,
            "scores": scores,
            "finished": finished,
            "lengths": lengths,
            "live": live,
            "history": history,
            "history_log_probs": history_log_probs,
            "cache": cache,
        }


# The declared layout of the bulk searches' loop state: G slots (inputs in
# flight) of K rows each, R = G * K rows (greedy: K = 1), M inputs (+ G sink
# rows, where a slot without a done input writes), T the ring's columns.
REFILL_LAYOUT = {
    "index": "()",  # the step; it writes ring column index % T
    "next": "()",  # the next input to start
    "input": "(G,)",  # the input each slot decodes (M + g while empty)
    "start": "(G,)",  # the step its input started: position = index - start
    "active": "(G,)",  # decoding an input
    "last": "(R,)",  # each row's last piece
    "cache": "N x 2 x (R, H, T, K_d)",  # the ring
    "cross": "N x 2 x (R, H, S, K_d)",  # its input's encoder keys, values
    "encoder_mask": "(R, S)",
    # Greedy: each row's outputs, written where its input's go.
    "tokens": "(M + G, T)",  # beam: each input's best hypothesis
    "log_probs": "(M + G, T)",
    "alternative_ids": "(M + G, T, k)",
    "alternative_log_probs": "(M + G, T, k)",
    # Beam: each hypothesis (row), reordered with its parent at every step.
    "scores": "(R,)",  # raw log P
    "finished": "(R,)",
    "lengths": "(R,)",
    "live": "(R,)",
    "history": "(R, T)",  # its pieces by position
    "history_log_probs": "(R, T)",
    "best_scores": "(M + G,)",  # each done input's best, normalized
    "best_finished": "(M + G,)",
}


def encode_inputs(model, encoder_inputs, head_masks=None, segments=None):
    """The encoder once and the cross-attention keys and values of every
    decoder layer: `(B, S)` ids -> `(cross, mask)`, N_d `(keys, values)`
    pairs of `(B, H, S, K_d)` and the `(B, S)` padding mask (the inputs of
    `RefillGreedySearch`). With `(B, S)` int `segments`, several sources
    are packed in each row (`Transformer.encode`); each source's keys and
    values are then the columns of its segment."""
    encoded = model.encode(encoder_inputs, head_masks=head_masks, segments=segments)
    _, cross = model.init_cache(encoded, 1)  # N_d x 2 x (B, H, S, K_d)
    return cross, padding_mask(encoder_inputs)


def greedy_search(
    model,
    encoder_inputs,
    max_length,
    bos_id,
    eos_id,
    head_masks=None,
    return_attention=True,
    top_k=0,
    prefix=None,
    prefix_lengths=None,
    start_finished=None,
):
    """Greedy decoding with the key/value cache; see `GreedySearch`."""
    search = GreedySearch(
        max_length, bos_id, eos_id, top_k=top_k, return_attention=return_attention
    )
    return search(
        model, encoder_inputs, head_masks, prefix, prefix_lengths, start_finished
    )


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
    top_k=0,
    prefix=None,
    prefix_lengths=None,
    return_beam=False,
    start_finished=None,
    beam_widths=None,
):
    """Beam search with the key/value cache; see `BeamSearch`."""
    search = BeamSearch(
        beam_size=beam_size,
        length_penalty=length_penalty,
        max_length=max_length,
        bos_id=bos_id,
        eos_id=eos_id,
        top_k=top_k,
        return_attention=return_attention,
        return_beam=return_beam,
    )
    return search(
        model,
        encoder_inputs,
        head_masks,
        prefix,
        prefix_lengths,
        start_finished,
        beam_widths,
    )


def teacher_forced_scores(
    model,
    encoder_inputs,
    decoder_inputs,
    labels,
    top_k=0,
    return_attention=True,
    layer_predictions=0,
    head_masks=None,
):
    """Scores given outputs in one teacher-forced pass of the whole model.

    Args:
        model: a `keras_mha.Transformer`.
        encoder_inputs: `(B, S)` int ids, 0 = padding.
        decoder_inputs: `(B, T)` int ids, `<s>` then the outputs shifted by
            one, 0 = padding.
        labels: `(B, T)` int ids of the outputs, 0 = padding.
        top_k: int, alternatives per position (0: none).
        return_attention: bool.
        layer_predictions: int k, the k pieces that each decoder layer's
            output predicts through `model.logits` (logit lens; 0: none).
        head_masks: optional dict of `(N, H)` head multipliers per kind.

    Returns:
        A dict: `"log_probs"` `(B, T)` log-probability of each label (0 at
        padding); with `top_k`, `"alternative_ids"` and
        `"alternative_log_probs"` `(B, T, k)`; with `return_attention`,
        `"encoder"` `(N_e, B, H, S, S)`, `"decoder"` `(N_d, B, H, T, T)`,
        `"cross"` `(N_d, B, H, T, S)`; with `layer_predictions`,
        `"layer_ids"` and `"layer_log_probs"` `(N_d, B, T, k)`.
    """
    inputs = {"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs}
    outputs = model(
        inputs,
        return_attention_scores=return_attention,
        return_hidden_states=bool(layer_predictions),
        head_masks=head_masks,
    )
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)  # (B, T, V)
    labels = ops.cast(labels, "int32")
    label_log_probs = ops.take_along_axis(log_probs, labels[..., None], axis=-1)
    label_log_probs = ops.where(labels > 0, label_log_probs[..., 0], 0.0)  # (B, T)
    result = {"log_probs": label_log_probs}
    if top_k:
        top_log_probs, top_ids = ops.top_k(log_probs, top_k)  # (B, T, k)
        result["alternative_ids"] = ops.cast(top_ids, "int32")
        result["alternative_log_probs"] = top_log_probs
    if layer_predictions:
        ids, values = [], []
        for hidden in outputs["hidden_states"]:  # N_d x (B, T, D)
            layer_log_probs = ops.log_softmax(
                ops.cast(model.logits(hidden), "float32"), axis=-1
            )  # (B, T, V)
            top_values, top_ids = ops.top_k(layer_log_probs, layer_predictions)
            ids.append(ops.cast(top_ids, "int32"))
            values.append(top_values)
        result["layer_ids"] = ops.stack(ids, axis=0)  # (N_d, B, T, k)
        result["layer_log_probs"] = ops.stack(values, axis=0)  # (N_d, B, T, k)
    if return_attention:
        for key, name in (
            ("encoder", "encoder_attentions"),
            ("decoder", "decoder_attentions"),
            ("cross", "cross_attentions"),
        ):
            result[key] = ops.cast(ops.stack(outputs[name], axis=0), "float32")
    return result


def compile_search(model, fn, xla=True):
    """Compiles `fn(model, *tensors)` for the backend: `jax.jit` or `tf.function`.

    With `xla=False`, TensorFlow compiles its own graph instead of an XLA
    program (about half the compile time, slower to run); the other
    backends have one kind of program and return `None`.

    On JAX the model's variables are passed in as arguments (a
    `keras.StatelessScope` maps them), so the weights are inputs of the
    compiled program rather than constants folded into it; on TensorFlow
    `tf.function` reads the variables directly. Other backends run eagerly.
    Each new set of input shapes compiles once and is then reused.

    Returns:
        A function of the tensors only, returning NumPy-convertible outputs.
    """
    backend = keras.backend.backend()
    if not xla and backend != "tensorflow":
        return None
    if backend == "jax":
        import jax  # The one backend-specific import of the library.

        variables = model.variables

        def stateless(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(model, *args)

        jitted = jax.jit(stateless)

        def run(*args):
            return jitted([v.value for v in variables], *args)

        return run
    if backend == "tensorflow":
        import tensorflow as tf

        # XLA: it updates the loop's histories and cache in place, where
        # TensorFlow's own kernels copy a whole buffer at every step
        # (warm greedy decoding of 320 test sources 1.9x faster on a 2-core
        # CPU, the same tokens; compiling takes about 1.5x longer).
        # No AutoGraph: the searches have no Python control flow on tensors
        # (`ops.while_loop` is explicit), and converting costs tracing time.
        return tf.function(
            lambda *args: fn(model, *args), jit_compile=xla, autograph=False
        )
    return lambda *args: fn(model, *args)


def greedy_search_uncached(model, encoder_inputs, max_length, bos_id, eos_id):
    """The keras.io examples' decoding: the whole model runs again for every
    new token (no cache) on the target padded to `max_length`, and the
    logits at the newest position choose the next token. A reference for
    tests and benchmarks, O(T * max_length) model work instead of O(T). (The
    causal mask keeps the padding after the newest position out of its
    logits; one input shape means the backend compiles its ops once.)

    Returns:
        `(B, T)` output ids, 0 after the end token (as `greedy_search`).
    """
    encoder_inputs = ops.convert_to_numpy(encoder_inputs)
    batch_size = encoder_inputs.shape[0]
    decoded = np.zeros((batch_size, max_length), "int32")  # (B, T)
    decoded[:, 0] = bos_id
    tokens = np.zeros((batch_size, max_length), "int32")  # (B, T)
    finished = np.zeros((batch_size,), bool)
    for step in range(max_length):
        logits = model({"encoder_inputs": encoder_inputs, "decoder_inputs": decoded})
        logits = ops.convert_to_numpy(logits[:, step])  # (B, V)
        next_token = np.where(finished, 0, logits.argmax(axis=-1)).astype("int32")
        tokens[:, step] = next_token
        finished |= next_token == eos_id
        if finished.all():
            break
        if step + 1 < max_length:
            decoded[:, step + 1] = next_token
    return ops.convert_to_tensor(tokens)
