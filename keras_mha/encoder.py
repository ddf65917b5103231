"""Transformer encoder layer: self-attention and feed-forward blocks.

Shape legend: B batch, S source length, D model dim, H heads.
"""

import keras

from keras_mha.masks import and_masks
from keras_mha.transformer_layer import TransformerLayer


@keras.saving.register_keras_serializable(package="keras_mha")
class TransformerEncoderLayer(TransformerLayer):
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

    def build(self, inputs_shape):
        self.self_attention = self._attention(
            "self_attention", inputs_shape, inputs_shape
        )
        self.self_attention_layer_norm, self.self_attention_dropout = (
            self._norm_and_dropout("self_attention", inputs_shape)
        )
        self.feedforward = self._feedforward(inputs_shape)
        self.feedforward_layer_norm, self.feedforward_dropout = self._norm_and_dropout(
            "feedforward", inputs_shape
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

        x, extras = self._residual(
            inputs,
            attend,
            self.self_attention_layer_norm,
            self.self_attention_dropout,
            training,
        )

        # Feed-forward block.
        x, _ = self._residual(
            x,
            lambda y: self.feedforward(y, training=training),
            self.feedforward_layer_norm,
            self.feedforward_dropout,
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
