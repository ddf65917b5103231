"""Position-wise feed-forward network shared by encoder and decoder layers.

Shape legend: B batch, T length, D model dim, F intermediate dim.
"""

import keras

from keras_mha.initializers import clone_initializer


@keras.saving.register_keras_serializable(package="keras_mha")
class FeedForward(keras.layers.Layer):
    """Two dense layers with an activation and dropout between them.

    Args:
        intermediate_dim: int, F.
        activation: activation of the first dense layer.
        dropout: float, dropout rate after the activation.
        kernel_initializer, bias_initializer: initializers of both layers.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: `(B, T, D)`.
        training: bool.

    Returns:
        `(B, T, D)`.

    Example:

    >>> tuple(FeedForward(32)(keras.ops.ones((2, 3, 8))).shape)
    (2, 3, 8)
    """

    def __init__(
        self,
        intermediate_dim,
        activation="relu",
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(intermediate_dim, int) or intermediate_dim <= 0:
            raise ValueError(
                "Received an invalid value for argument `intermediate_dim`, "
                "expected a positive integer. "
                f"Received: intermediate_dim={intermediate_dim}"
            )
        self.intermediate_dim = intermediate_dim
        self.activation = keras.activations.get(activation)
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]

        def common():
            # A copy of each initializer per Dense: the two kernels differ.
            return dict(
                kernel_initializer=clone_initializer(self.kernel_initializer),
                bias_initializer=clone_initializer(self.bias_initializer),
                dtype=self.dtype_policy,
            )

        self.intermediate_dense = keras.layers.Dense(
            self.intermediate_dim,
            activation=self.activation,
            name="intermediate_dense",
            **common(),
        )
        self.intermediate_dense.build(inputs_shape)
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout_layer"
        )
        self.output_dense = keras.layers.Dense(
            hidden_dim, name="output_dense", **common()
        )
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self.built = True

    def call(self, inputs, training=None):
        x = self.intermediate_dense(inputs)  # (B, T, F)
        x = self.dropout_layer(x, training=training)
        return self.output_dense(x)  # (B, T, D)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
