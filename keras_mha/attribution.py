"""Attribution: how much each source piece and each earlier target piece
contributed to each output piece.

For output piece t the explained value is its log-probability
`f_t = log p(y_t | y_<t, x)` under teacher forcing. The inputs are the
scaled token embeddings `e` of the source pieces `(S, D)` and of the
decoder inputs `(T, D)` (`<s>` then the outputs shifted by one); position
vectors are added by the model and are not attributed.

Methods (`method=`):
- `"grad_x_input"`: `a_i = sum_d e_id * df_t/de_id` (Shrikumar et al.,
  2016; Kindermans et al., 2016).
- `"integrated_gradients"`: `a_i = sum_d e_id * mean_k df_t/de_id(alpha_k e)`
  over `steps` midpoints `alpha_k = (k + 1/2) / steps` of the straight path
  from the all-zero embedding baseline (Sundararajan et al., 2017). The
  attributions of one output piece sum to `f_t(e) - f_t(0)` up to the
  integration error, which `Attribution.completeness_error` reports.

Every output piece's gradient comes from one backward pass: the rows of a
call each explain one `f_t` at one point of the path (`T` rows for gradient
x input, `T * (steps + 2)` for integrated gradients), a point at a time, in
chunks of a fixed number of rows: one forward pass serves a chunk and its
backward passes run together (`jax.vjp` and `jax.vmap`, or TensorFlow's
vectorized `GradientTape.jacobian`). That gradient is the one place that
names a backend (`_value_and_gradient`); the whole computation is compiled
with `keras_mha.decoding.compile_search`.

Shape legend: S source pieces, T target pieces (the end piece included), D
model width, R rows of the repeated batch.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_mha.decoding import check_integer, compile_search
from keras_mha.errors import InvalidArgumentError

ATTRIBUTION_METHODS = ("integrated_gradients", "grad_x_input")


@dataclasses.dataclass
class Attribution:
    """What each input piece contributed to each output piece.

    Attributes:
        method: `"integrated_gradients"` or `"grad_x_input"`.
        source: `(T, S)` contribution of source piece s to output piece t.
        target: `(T, T)` contribution of decoder input u (`<s>`, then the
            outputs) to output piece t; zero for u > t (causal).
        values: `(T,)` the explained log-probabilities `f_t`.
        baseline_values: `(T,)` `f_t` at the all-zero baseline (integrated
            gradients; `None` for gradient x input).
        steps: integration steps (integrated gradients).
        source_tokens, target_tokens, decoder_input_tokens: the pieces of
            the columns and rows (set by `Translator.attribute`).
    """

    method: str
    source: np.ndarray
    target: np.ndarray
    values: np.ndarray
    baseline_values: np.ndarray | None = None
    steps: int = 0
    source_tokens: list = dataclasses.field(default_factory=list)
    target_tokens: list = dataclasses.field(default_factory=list)
    decoder_input_tokens: list = dataclasses.field(default_factory=list)

    @property
    def source_share(self):
        """`(T,)` the share of each output piece's absolute attribution that
        comes from the source (the rest from the target prefix)."""
        source = np.abs(self.source).sum(-1)
        total = source + np.abs(self.target).sum(-1)
        return np.divide(source, total, out=np.zeros_like(source), where=total > 0)

    @property
    def completeness_error(self):
        """`(T,)` |sum of attributions - (f_t - f_t(baseline))| (integrated
        gradients; `None` otherwise)."""
        if self.baseline_values is None:
            return None
        total = self.source.sum(-1) + self.target.sum(-1)
        return np.abs(total - (self.values - self.baseline_values))


def _value_and_gradient(fn, x):
    """The one backend-specific function of attribution: `fn(x)`, `(R,)`
    values of one input `x` `(1, L, D)`, and the gradient of each value with
    respect to it, `(R, L, D)`: one forward pass, then the R backward passes
    together (JAX: `jax.vjp`, then `jax.vmap` over the R one-hot
    cotangents; TensorFlow: `GradientTape.jacobian`, vectorized).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        values, pullback = jax.vjp(fn, x)
        cotangents = ops.eye(values.shape[0], dtype=values.dtype)  # (R, R)
        (gradient,) = jax.vmap(pullback)(cotangents)  # (R, 1, L, D)
        return values, gradient[:, 0]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            values = fn(x)
        return values, tape.jacobian(values, x)[:, 0]
    raise NotImplementedError(f"Attribution needs JAX or TensorFlow, not {backend}")


def explained_values(model, encoder_inputs, decoder_inputs, labels, vectors, rows):
    """`(R,)` log-probability of `labels[r, rows[r]]` with token vectors
    `vectors = (source (R, S, D), target (R, T, D))`, or one input `(1, S,
    D)`, `(1, T, D)` (with `(1, S)`, `(1, T)` ids) that every row reads.

    Only row r's own position goes through the final normalisation and the
    output projection: the other T - 1 positions' logits would be thrown
    away (the decoder states of every position are still computed: later
    positions are masked out of earlier ones, so they cost nothing in the
    value, and the compiler drops what the result does not use)."""
    source, target = vectors
    outputs = model(
        {"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs},
        token_vectors={"source": source, "target": target},
        return_hidden_states=True,
    )
    hidden = outputs["hidden_states"][-1]  # (R or 1, T, D) the last decoder layer
    if hidden.shape[0] != rows.shape[0]:  # One input for every row.
        hidden = ops.broadcast_to(hidden, (rows.shape[0], *hidden.shape[1:]))
    at = ops.take_along_axis(hidden, rows[:, None, None], axis=1)  # (R, 1, D)
    logits = model.logits(at)[:, 0]  # (R, V)
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)  # (R, V)
    label = ops.take_along_axis(labels, rows[:, None], axis=1)  # (R, 1)
    return ops.take_along_axis(log_probs, label, axis=-1)[:, 0]  # (R,)


def _attribute(model, encoder_inputs, decoder_inputs, labels, rows, alphas):
    """The compiled body: gradients at `alphas` times the inputs.

    Args: `(R, S)`, `(R, T)`, `(R, T)` ids, R copies of one pair; `rows`
    `(R,)` the output piece each row explains; `alphas` `(R,)` the point
    on the path, the same for every row of a call.

    Returns: `(values (R,), source grad x input (R, S), target (R, T))`.
    """
    # One input for all rows (see `_value_and_gradient`).
    encoder_inputs, decoder_inputs = encoder_inputs[:1], decoder_inputs[:1]
    alphas = alphas[:1]
    source = model.source_embedding.token_vectors(encoder_inputs)  # (1, S, D)
    target = model.target_embedding.token_vectors(decoder_inputs)  # (1, T, D)
    scale = ops.cast(alphas, source.dtype)[:, None, None]

    def fn(joint):
        split = ops.shape(source)[1]
        return explained_values(
            model,
            encoder_inputs,
            decoder_inputs,
            labels,
            (joint[:, :split], joint[:, split:]),
            rows,
        )

    joint = ops.concatenate([source, target], axis=1) * scale  # (R, S + T, D)
    values, gradient = _value_and_gradient(fn, joint)
    inputs = ops.concatenate([source, target], axis=1)
    products = ops.sum(gradient * inputs, axis=-1)  # (R, S + T)
    split = ops.shape(source)[1]
    return values, products[:, :split], products[:, split:]


class Attributor:
    """Attribution for a `keras_mha.Translator`'s model, compiled once per
    padded input shape.

    Example:

    >>> attributor = Attributor(translator.model)  # doctest: +SKIP
    >>> a = attributor(source_ids, decoder_ids, labels)  # doctest: +SKIP
    >>> a.source.shape  # (T, S)  # doctest: +SKIP


    Args:
        model: a `keras_mha.Transformer`.
        compile: how to compile `_attribute` (default
            `keras_mha.decoding.compile_search`; `Translator` passes its own,
            which counts programs).
    """

    # Padded lengths: source and target are padded to one bucket (the larger
    # of the two), and the rows run in chunks of `CHUNK_ROWS` (fewer for the
    # 8-piece bucket), so that both methods and every sentence of a bucket
    # share one compiled program (4 for a model of `max_length` 64). Padding
    # is exact: padded source keys are masked and padded target positions
    # come after every real one (causal). 16 rows: a chunk as long as the
    # bucket computed up to twice the rows a pair needs (a 25-piece output
    # in the 64 bucket: 64 rows for 25), and per row 16 were also faster
    # than 64 (a 33 + 25-piece pair, en-es, JAX: gradient x input 0.97 ->
    # 0.34 s, integrated gradients 7.4 -> 5.0 s; 8 rows: 0.39 s, 5.9 s).
    LENGTH_BUCKETS = (8, 16, 32, 64, 128, 256, 512)
    CHUNK_ROWS = 16

    def __init__(self, model, compile=compile_search):
        self.model = model
        self._compiled = compile(model, _attribute)

    def __call__(
        self, source_ids, decoder_ids, labels, method="integrated_gradients", steps=16
    ):
        """Attributes each label of one pair.

        Args:
            source_ids: `(S,)` source ids (no padding).
            decoder_ids: `(T,)` decoder inputs, `<s>` then the labels shifted.
            labels: `(T,)` output ids, the end piece included.
            method: one of `ATTRIBUTION_METHODS`.
            steps: integration steps (integrated gradients).

        Returns:
            An `Attribution`.
        """
        if method not in ATTRIBUTION_METHODS:
            raise InvalidArgumentError(
                f"Received an invalid value for argument `method`, expected one "
                f"of {ATTRIBUTION_METHODS}. Received: method={method!r}"
            )
        check_integer("steps", steps, minimum=1)
        S, T = len(source_ids), len(labels)
        padded = next((b for b in self.LENGTH_BUCKETS if b >= max(S, T)), max(S, T))
        padded = min(padded, self.model.max_length)
        source_ids = np.pad(np.asarray(source_ids, "int32"), (0, padded - S))
        decoder_ids = np.pad(np.asarray(decoder_ids, "int32"), (0, padded - T))
        labels = np.pad(np.asarray(labels, "int32"), (0, padded - T))
        # Rows: every output piece at the input itself (alpha 1), and for
        # integrated gradients also at every point of the path and at the
        # baseline (alpha 0).
        if method == "grad_x_input":
            alphas, points = np.zeros((0,), "float32"), np.ones((1,), "float32")
        else:
            alphas = ((np.arange(steps) + 0.5) / steps).astype("float32")
            points = np.concatenate([[1.0, 0.0], alphas]).astype("float32")
        # Point by point, each point's T rows in whole chunks: every call
        # explains rows at one point of the path (on JAX, one forward pass).
        chunk = min(padded, self.CHUNK_ROWS)
        per_point = -(-T // chunk) * chunk  # T rounded up to whole chunks
        rows = np.tile(
            np.pad(np.arange(T, dtype="int32"), (0, per_point - T)), len(points)
        )
        scales = np.repeat(points, per_point)  # (R,)
        tiled = [np.tile(x, (chunk, 1)) for x in (source_ids, decoder_ids, labels)]
        parts = [
            self._compiled(*tiled, rows[i : i + chunk], scales[i : i + chunk])
            for i in range(0, len(rows), chunk)
        ]
        values, source, target = (
            np.concatenate([np.asarray(p[j], "float64") for p in parts])
            .reshape(len(points), per_point, -1)[:, :T]
            .transpose(1, 0, 2)
            for j in range(3)
        )
        # One row per output piece and point; padding cut.
        values = values[:, :, 0]
        source = source[:, :, :S]
        target = target[:, :, :T]
        if method == "grad_x_input":
            return Attribution(method, source[:, 0], target[:, 0], values[:, 0])
        # Each path row holds e . g(alpha e); their mean over the path is the
        # midpoint rule for the integral.
        return Attribution(
            method,
            source[:, 2:].mean(axis=1),
            target[:, 2:].mean(axis=1),
            values=values[:, 0],
            baseline_values=values[:, 1],
            steps=steps,
        )
