"""Token + position embedding with Keras mask propagation.

Shape legend: B batch, T sequence length, D embedding dim, V vocabulary.
"""

import math

import keras
from keras import ops

from keras_mha import backend_config
from keras_mha.masks import padding_mask


@ops.custom_gradient
def _tied_logits(hidden, embeddings):
    """`hidden @ embeddings^T` with a transpose-light gradient.

    Args:
        hidden: `(N, D)`.
        embeddings: `(V, D)`.

    Returns:
        `(N, V)` logits.
    """
    logits = ops.matmul(hidden, ops.transpose(embeddings))  # (N, V)

    def grad(*args, upstream=None):
        if upstream is None:  # TensorFlow passes it positionally.
            (upstream,) = args
        hidden_grad = ops.matmul(upstream, embeddings)  # (N, V) @ (V, D)
        embeddings_grad = ops.transpose(
            ops.matmul(ops.transpose(hidden), upstream)  # (D, N) @ (N, V)
        )  # (V, D)
        return hidden_grad, embeddings_grad

    return logits, grad


def sinusoidal_positions(positions, embedding_dim):
    """Sinusoidal position encodings (Vaswani et al., 2017).

    Args:
        positions: `(T,)` positions (any numeric dtype).
        embedding_dim: int, D (even).

    Returns:
        `(T, D)` float32 encodings: `[sin(p w_i) ..., cos(p w_i) ...]`.
    """
    half = embedding_dim // 2
    inverse_frequencies = ops.exp(
        ops.arange(half, dtype="float32") * (-math.log(10000.0) / max(half - 1, 1))
    )  # (D/2,)
    angles = ops.cast(positions, "float32")[:, None] * inverse_frequencies[None]
    return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)  # (T, D)


@keras.saving.register_keras_serializable(package="keras_mha")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Token embedding scaled by `sqrt(D)` plus a position embedding.

    Args:
        vocabulary_size: int, V.
        sequence_length: int, the longest sequence (positions) supported.
        embedding_dim: int, D (even).
        position_embedding: `"sinusoidal"` (default, no weights) or
            `"learned"`.
        mask_zero: bool, token id 0 is padding; the output carries a Keras
            mask so downstream attention layers see it.
        embeddings_initializer: initializer of the token table. Defaults to
            a normal with stddev `D**-0.5`, which the `sqrt(D)` scaling
            brings back to unit variance.
        **kwargs: base layer arguments.

    Call arguments:
        token_ids: `(B, T)` int tensor.
        start_index: int or scalar tensor, position of `token_ids[:, 0]`
            (the cache index when decoding step by step), or a `(B,)`
            tensor, one such position per row (rows at different steps).

    Returns:
        `(B, T, D)` embeddings.

    Example:

    >>> layer = TokenAndPositionEmbedding(100, 16, 8)
    >>> tuple(layer(ops.ones((2, 5), "int32")).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim,
        position_embedding="sinusoidal",
        mask_zero=True,
        embeddings_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("vocabulary_size", vocabulary_size),
            ("sequence_length", sequence_length),
            ("embedding_dim", embedding_dim),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"Received an invalid value for argument `{name}`, expected "
                    f"a positive integer. Received: {name}={value}"
                )
        if embedding_dim % 2:
            raise ValueError(
                "`embedding_dim` must be even for sinusoidal positions. "
                f"Received: embedding_dim={embedding_dim}"
            )
        if position_embedding not in ("sinusoidal", "learned"):
            raise ValueError(
                "`position_embedding` must be 'sinusoidal' or 'learned'. "
                f"Received: position_embedding={position_embedding!r}"
            )
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.embedding_dim = embedding_dim
        self.position_embedding = position_embedding
        self.mask_zero = mask_zero
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer
            or keras.initializers.RandomNormal(stddev=embedding_dim**-0.5)
        )
        self.supports_masking = mask_zero

    def build(self, token_ids_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.vocabulary_size, self.embedding_dim),
            initializer=self.embeddings_initializer,
        )
        if self.position_embedding == "learned":
            self.position_embeddings = self.add_weight(
                name="position_embeddings",
                shape=(self.sequence_length, self.embedding_dim),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
            )
        self.built = True

    def token_vectors(self, token_ids):
        """The token part of the output: `(B, T)` ids -> `(B, T, D)`, the
        embeddings scaled by sqrt(D) (what attribution methods perturb)."""
        tokens = ops.take(self.embeddings, ops.cast(token_ids, "int32"), axis=0)
        return tokens * ops.cast(math.sqrt(self.embedding_dim), tokens.dtype)

    def position_vectors(self, length, start_index=0, positions=None):
        """`(T, D)` the position part of the output for positions
        `start_index .. start_index + T - 1`; `(B, T, D)` for a `(B,)`
        `start_index`, or for `(B, T)` int `positions`, each token's own
        (several sequences packed in one row each start at 0)."""
        if positions is not None or len(getattr(start_index, "shape", ())) == 1:
            if positions is None:
                per_row = ops.cast(start_index, "int32")[:, None]
                positions = per_row + ops.arange(length, dtype="int32")[None]
            positions = ops.cast(positions, "int32")  # (B, T)
            if self.position_embedding == "learned":
                return ops.take(self.position_embeddings, positions, axis=0)
            flat = sinusoidal_positions(
                ops.reshape(positions, (-1,)), self.embedding_dim
            )
            return ops.reshape(flat, (-1, length, self.embedding_dim))  # (B, T, D)
        positions = ops.arange(length) + start_index  # (T,)
        if self.position_embedding == "learned":
            return ops.take(self.position_embeddings, positions, axis=0)
        return sinusoidal_positions(positions, self.embedding_dim)

    def call(self, token_ids, start_index=0, token_vectors=None, positions=None):
        """`(B, T)` ids -> `(B, T, D)` token vectors + position vectors;
        `token_vectors` `(B, T, D)`, if given, replace `token_vectors(ids)`;
        `positions` `(B, T)`, if given, are each token's position (see
        `position_vectors`)."""
        length = ops.shape(token_ids)[1]  # Dynamic under tf.function.
        tokens = (
            self.token_vectors(token_ids) if token_vectors is None else token_vectors
        )
        position_vectors = self.position_vectors(length, start_index, positions)
        if len(position_vectors.shape) == 2:
            position_vectors = position_vectors[None]  # (1, T, D)
        return tokens + ops.cast(position_vectors, tokens.dtype)  # (B, T, D)

    def compute_mask(self, token_ids, mask=None):
        return padding_mask(token_ids) if self.mask_zero else None

    def compute_output_shape(self, token_ids_shape):
        return tuple(token_ids_shape) + (self.embedding_dim,)

    def logits(self, hidden):
        """Tied output projection: `(B, T, D)` -> `(B, T, V)` logits."""
        # A matmul, not `einsum("btd,vd->btv")`: TensorFlow's einsum gradient
        # for this product made a whole training step 1.5x slower on CPU
        # (measured with benchmarks/bench_training.py); JAX is indifferent.
        embeddings = ops.cast(self.embeddings, hidden.dtype)  # (V, D)
        if not backend_config.uses(backend_config.TIED_LOGITS_GRADIENT):
            return ops.matmul(hidden, ops.transpose(embeddings))  # (B, T, V)
        shape = ops.shape(hidden)
        flat = ops.reshape(hidden, (-1, shape[-1]))  # (B * T, D)
        logits = _tied_logits(flat, embeddings)  # (B * T, V)
        return ops.reshape(logits, tuple(shape[:-1]) + (self.vocabulary_size,))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "embedding_dim": self.embedding_dim,
                "position_embedding": self.position_embedding,
                "mask_zero": self.mask_zero,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
