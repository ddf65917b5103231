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

Every output piece's gradient is taken in one backward pass: the pair is
repeated `T` times along the batch and row t differentiates its own `f_t`
(with `steps` rows per output piece for integrated gradients). The gradient
itself is the one place that names a backend (`_value_and_gradient`:
`jax.value_and_grad` or `tf.GradientTape`); the whole computation is
compiled with `keras_mha.decoding.compile_search`.

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
    """`(fn(x), d sum(fn(x)) / dx)` for a scalar-summed `fn`: the one
    backend-specific function of attribution."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def total(x):
            values = fn(x)
            return ops.sum(values), values

        (_, values), gradient = jax.value_and_grad(total, has_aux=True)(x)
        return values, gradient
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            values = fn(x)
            summed = tf.reduce_sum(values)
        return values, tape.gradient(summed, x)
    raise NotImplementedError(f"Attribution needs JAX or TensorFlow, not {backend}")


def explained_values(model, encoder_inputs, decoder_inputs, labels, vectors, rows):
    """`(R,)` log-probability of `labels[r, rows[r]]` with token vectors
    `vectors = (source (R, S, D), target (R, T, D))`."""
    source, target = vectors
    logits = model(
        {"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs},
        token_vectors={"source": source, "target": target},
    )  # (R, T, V)
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    log_probs = ops.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    one_hot = ops.one_hot(rows, ops.shape(labels)[1])  # (R, T)
    return ops.sum(log_probs * one_hot, axis=-1)  # (R,)


def _attribute(model, encoder_inputs, decoder_inputs, labels, rows, alphas):
    """The compiled body: gradients at `alphas` times the inputs.

    Args: `(R, S)`, `(R, T)`, `(R, T)` ids; `rows` `(R,)` the output piece
    each row explains; `alphas` `(R,)` the point on the path of each row.

    Returns: `(values (R,), source grad x input (R, S), target (R, T))`.
    """
    source = model.source_embedding.token_vectors(encoder_inputs)  # (R, S, D)
    target = model.target_embedding.token_vectors(decoder_inputs)  # (R, T, D)
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

    # Padded source and target lengths: one compiled program per pair of
    # buckets (and number of steps), whatever the sentence. Padding is exact:
    # padded source keys are masked and padded target positions come after
    # every real one (causal).
    LENGTH_BUCKETS = (8, 16, 32, 64, 128, 256, 512)

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
        padded_s = next((b for b in self.LENGTH_BUCKETS if b >= S), S)
        padded_t = next((b for b in self.LENGTH_BUCKETS if b >= T), T)
        padded_s = min(padded_s, self.model.max_length)
        padded_t = min(padded_t, self.model.max_length)
        source_ids = np.pad(np.asarray(source_ids, "int32"), (0, padded_s - S))
        decoder_ids = np.pad(np.asarray(decoder_ids, "int32"), (0, padded_t - T))
        labels = np.pad(np.asarray(labels, "int32"), (0, padded_t - T))
        if method == "grad_x_input":
            alphas = np.zeros((0,), "float32")
        else:
            alphas = ((np.arange(steps) + 0.5) / steps).astype("float32")
        # Rows: every output piece at every point of the path, then at the
        # input itself (alpha 1) and at the baseline (alpha 0).
        points = np.concatenate([alphas, [1.0, 0.0]]).astype("float32")
        rows = np.repeat(np.arange(padded_t, dtype="int32"), len(points))  # (R,)
        R = len(rows)
        values, source, target = self._compiled(
            np.tile(source_ids, (R, 1)),
            np.tile(decoder_ids, (R, 1)),
            np.tile(labels, (R, 1)),
            rows,
            np.tile(points, padded_t),
        )
        # Rows of padded positions explain nothing: cut them and the padding.
        values = np.asarray(values, "float64").reshape(padded_t, len(points))[:T]
        source = np.asarray(source, "float64").reshape(padded_t, len(points), -1)
        target = np.asarray(target, "float64").reshape(padded_t, len(points), -1)
        source, target = source[:T, :, :S], target[:T, :, :T]
        if method == "grad_x_input":
            return Attribution(method, source[:, -2], target[:, -2], values[:, -2])
        # Each row holds e . g(alpha e); their mean over the path is the
        # midpoint rule for the integral.
        return Attribution(
            method,
            source[:, : len(alphas)].mean(axis=1),
            target[:, : len(alphas)].mean(axis=1),
            values=values[:, -2],
            baseline_values=values[:, -1],
            steps=steps,
        )
