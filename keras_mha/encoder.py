"""Transformer encoder layer: self-attention and feed-forward blocks.

Shape legend: B batch, S source length, D model dim, H heads.
"""

import keras

from keras_mha.feed_forward import FeedForward
from keras_mha.masks import and_masks
from keras_mha.multi_head_attention import MultiHeadAttention


def residual(inputs, sublayer, layer_norm, dropout_layer, normalize_first, training):
    """`x + dropout(f(x))` with the layer norm before (pre-LN) or after.

    Args:
        inputs: `(B, T, D)`.
        sublayer: callable `(B, T, D) -> (outputs, *extras)` or `-> outputs`.

    Returns:
        `(outputs, extras)` where `extras` is a tuple of what `sublayer`
        returned besides its output (attention scores, caches).
    """
    x = layer_norm(inputs) if normalize_first else inputs
    result = sublayer(x)
    x, extras = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    x = dropout_layer(x, training=training) + inputs
    if not normalize_first:
        x = layer_norm(x)
    return x, extras


def feedforward_dropout_rate(dropout, activation_dropout):
    """The feed-forward hidden layer's dropout: `activation_dropout`, or
    `dropout` when it is None (what models saved before the argument got)."""
    return dropout if activation_dropout is None else activation_dropout


def check_attention_sizes(hidden_dim, num_heads):
    if hidden_dim % num_heads:
        raise ValueError(
            "The model dimension must be divisible by `num_heads`. Received: "
            f"hidden_dim={hidden_dim}, num_heads={num_heads}"
        )


@keras.saving.register_keras_serializable(package="keras_mha")
class TransformerEncoderLayer(keras.layers.Layer):
    """One Transformer encoder layer (self-attention + feed-forward).

    Args:
        intermediate_dim: int, feed-forward hidden size.
        num_heads: int, H (must divide D).
        dropout: float, dropout on attention weights and residual branches.
        activation_dropout: float, dropout on the feed-forward hidden layer
            (after the activation); `None` (default) uses `dropout`.
            keras-hub's layers have none there (0.0).
        activation: feed-forward activation.
        layer_norm_epsilon: float.
        normalize_first: bool, pre-LN (True) or post-LN (False).
        kernel_initializer, bias_initializer: initializers.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: `(B, S, D)`.
        padding_mask: optional `(B, S)` boolean, `True` = real token; AND-ed
            with the Keras mask of `inputs` if there is one.
        attention_mask: optional `(B, S, S)` boolean.
        return_attention_scores: bool.
        head_mask: optional `(H,)` or `(B, H)` head multipliers.
        training: bool.

    Returns:
        `(B, S, D)`, and the `(B, H, S, S)` scores when requested.

    Example:

    >>> layer = TransformerEncoderLayer(intermediate_dim=32, num_heads=2)
    >>> tuple(layer(keras.ops.ones((2, 5, 8))).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        intermediate_dim,
        num_heads,
        dropout=0.0,
        activation_dropout=None,
        activation="relu",
        layer_norm_epsilon=1e-5,
        normalize_first=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.activation_dropout = activation_dropout
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        check_attention_sizes(hidden_dim, self.num_heads)
        self.self_attention = MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=hidden_dim // self.num_heads,
            dropout=self.dropout,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
            name="self_attention",
        )
        self.self_attention.build(inputs_shape, inputs_shape)
        self.self_attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="self_attention_layer_norm",
        )
        self.self_attention_layer_norm.build(inputs_shape)
        self.self_attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="self_attention_dropout"
        )
        self.feedforward = FeedForward(
            self.intermediate_dim,
            activation=self.activation,
            dropout=feedforward_dropout_rate(self.dropout, self.activation_dropout),
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
            name="feedforward",
        )
        self.feedforward.build(inputs_shape)
        self.feedforward_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="feedforward_layer_norm",
        )
        self.feedforward_layer_norm.build(inputs_shape)
        self.feedforward_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="feedforward_dropout"
        )
        self.built = True

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        head_mask=None,
        training=None,
        mask=None,
        inputs_mask=None,
    ):
        # The implicit Keras mask of `inputs` arrives as `mask` when `inputs`
        # is the only tensor argument and as `inputs_mask` when there are
        # several (e.g. an explicit `padding_mask`); AND it with the explicit
        # padding mask in the one mask helper.
        padding_mask = and_masks(mask, inputs_mask, padding_mask)

        # Self-attention block.
        def attend(x):
            return self.self_attention(
                x,
                x,
                query_mask=padding_mask,
                value_mask=padding_mask,
                attention_mask=attention_mask,
                return_attention_scores=return_attention_scores,
                head_mask=head_mask,
                training=training,
            )

        x, extras = residual(
            inputs,
            attend,
            self.self_attention_layer_norm,
            self.self_attention_dropout,
            self.normalize_first,
            training,
        )

        # Feed-forward block.
        x, _ = residual(
            x,
            lambda y: self.feedforward(y, training=training),
            self.feedforward_layer_norm,
            self.feedforward_dropout,
            self.normalize_first,
            training,
        )
        return (x, extras[0]) if return_attention_scores else x

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def compute_output_spec(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        head_mask=None,
        training=None,
        mask=None,
        inputs_mask=None,
    ):
        # `compute_output_shape` alone would give one output even when the
        # scores are returned too (functional models, saving).
        output = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        batch_size, length = inputs.shape[0], inputs.shape[1]
        scores_shape = (batch_size, self.num_heads, length, length)  # (B, H, S, S)
        return output, keras.KerasTensor(scores_shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "activation_dropout": self.activation_dropout,
                "activation": keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "normalize_first": self.normalize_first,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
