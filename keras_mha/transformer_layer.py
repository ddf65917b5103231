"""What the encoder and decoder layers share: their arguments, their config,
and the sublayers and wiring of one residual block.

Shape legend: B batch, T sequence length, D model dim, H heads.
"""

import keras

from keras_mha.feed_forward import FeedForward
from keras_mha.multi_head_attention import MultiHeadAttention


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"positive integer. Received: {name}={value}"
        )


def _check_rate(name, value):
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"float in [0, 1). Received: {name}={value}"
        )


class TransformerLayer(keras.layers.Layer):
    """Base of `TransformerEncoderLayer` and `TransformerDecoderLayer`.

    Holds the arguments both take (validated here, serialized by
    `get_config`) and builds the parts of their blocks: attention, the
    feed-forward network, and each block's layer norm and dropout. Not a
    layer to use on its own: it has no `call`.

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
        _check_positive_int("intermediate_dim", intermediate_dim)
        _check_positive_int("num_heads", num_heads)
        _check_rate("dropout", dropout)
        if activation_dropout is not None:
            _check_rate("activation_dropout", activation_dropout)
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

    # ------------------------------------------------------------ sublayers
    def _attention(self, name, query_shape, value_shape):
        """A built `MultiHeadAttention` with `D // H` features per head."""
        hidden_dim = query_shape[-1]
        if hidden_dim % self.num_heads:
            raise ValueError(
                "The model dimension must be divisible by `num_heads`. Received: "
                f"hidden_dim={hidden_dim}, num_heads={self.num_heads}"
            )
        attention = MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=hidden_dim // self.num_heads,
            dropout=self.dropout,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
            name=name,
        )
        attention.build(query_shape, value_shape)
        return attention

    def _feedforward(self, inputs_shape):
        """The built feed-forward network of the last block."""
        feedforward = FeedForward(
            self.intermediate_dim,
            activation=self.activation,
            # Models saved without `activation_dropout` keep `dropout` there.
            dropout=(
                self.dropout
                if self.activation_dropout is None
                else self.activation_dropout
            ),
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
            name="feedforward",
        )
        feedforward.build(inputs_shape)
        return feedforward

    def _norm_and_dropout(self, block, inputs_shape):
        """The built `{block}_layer_norm` and the `{block}_dropout` of a block."""
        layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name=f"{block}_layer_norm",
        )
        layer_norm.build(inputs_shape)
        dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name=f"{block}_dropout"
        )
        return layer_norm, dropout

    def _residual(self, inputs, sublayer, layer_norm, dropout_layer, training):
        """`x + dropout(f(x))` with the layer norm before (pre-LN) or after.

        Args:
            inputs: `(B, T, D)`.
            sublayer: callable `(B, T, D) -> (outputs, *extras)` or
                `-> outputs`.

        Returns:
            `(outputs, extras)` where `extras` is a tuple of what `sublayer`
            returned besides its output (attention scores, caches).
        """
        x = layer_norm(inputs) if self.normalize_first else inputs
        result = sublayer(x)
        if isinstance(result, tuple):
            x, extras = result[0], result[1:]
        else:
            x, extras = result, ()
        x = dropout_layer(x, training=training) + inputs
        if not self.normalize_first:
            x = layer_norm(x)
        return x, extras

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
