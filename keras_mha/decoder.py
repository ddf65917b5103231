"""Transformer decoder layer: causal self-attention, cross-attention and
feed-forward blocks, with key/value caches for step-by-step decoding.

Shape legend: B batch, T target length, S source length, D model dim,
H heads, K key dim, L_max the length of the self-attention cache.
"""

import keras

from keras_mha.masks import and_masks
from keras_mha.transformer_layer import TransformerLayer


@keras.saving.register_keras_serializable(package="keras_mha")
class TransformerDecoderLayer(TransformerLayer):
    """One Transformer decoder layer.

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
        decoder_sequence: `(B, T, D)`.
        encoder_sequence: `(B, S, D)`; may be `None` when
            `cross_attention_cache` is given.
        decoder_padding_mask: optional `(B, T)`, AND-ed with the Keras mask
            of `decoder_sequence`.
        encoder_padding_mask: optional `(B, S)`, AND-ed with the Keras mask
            of `encoder_sequence`. Cross-attention masks the *encoder's*
            padding.
        self_attention_cache: optional `(keys, values)`, each
            `(B, H, L_max, K)` (see `MultiHeadAttention`).
        self_attention_cache_update_index: int or scalar tensor, position of
            `decoder_sequence[:, 0]` in the cache.
        self_attention_key_mask: optional `(B, L_max)` bool, the cache
            columns each row may attend to, instead of the causal mask at
            the update index (rows at different steps of one cache).
        cross_attention_cache: optional `(keys, values)`, each `(B, H, S, K)`,
            the encoder's keys and values projected once (see
            `MultiHeadAttention.compute_key_value`).
        return_attention_scores: bool.
        self_head_mask, cross_head_mask: optional `(H,)`/`(B, H)` head
            multipliers.
        training: bool.

    Returns:
        `outputs` `(B, T, D)`; with `return_attention_scores` also the
        self-attention `(B, H, T, T or L_max)` and cross-attention
        `(B, H, T, S)` scores; with a self-attention cache also the updated
        cache, last. E.g. `(outputs, self_scores, cross_scores, cache)`.

    Example:

    >>> layer = TransformerDecoderLayer(intermediate_dim=32, num_heads=2)
    >>> y = layer(keras.ops.ones((2, 3, 8)), keras.ops.ones((2, 5, 8)))
    >>> tuple(y.shape)
    (2, 3, 8)
    """

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        encoder_sequence_shape = encoder_sequence_shape or decoder_sequence_shape
        self.self_attention = self._attention(
            "self_attention", decoder_sequence_shape, decoder_sequence_shape
        )
        self.self_attention_layer_norm, self.self_attention_dropout = (
            self._norm_and_dropout("self_attention", decoder_sequence_shape)
        )
        self.cross_attention = self._attention(
            "cross_attention", decoder_sequence_shape, encoder_sequence_shape
        )
        self.cross_attention_layer_norm, self.cross_attention_dropout = (
            self._norm_and_dropout("cross_attention", decoder_sequence_shape)
        )
        self.feedforward = self._feedforward(decoder_sequence_shape)
        self.feedforward_layer_norm, self.feedforward_dropout = self._norm_and_dropout(
            "feedforward", decoder_sequence_shape
        )
        self.built = True

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        encoder_padding_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        self_attention_key_mask=None,
        cross_attention_cache=None,
        return_attention_scores=False,
        self_head_mask=None,
        cross_head_mask=None,
        training=None,
        decoder_sequence_mask=None,
        encoder_sequence_mask=None,
    ):
        # `*_sequence_mask` are the implicit Keras masks that Keras fills in
        # from the inputs; AND them with the explicit padding masks.
        decoder_padding_mask = and_masks(decoder_sequence_mask, decoder_padding_mask)
        encoder_padding_mask = and_masks(encoder_sequence_mask, encoder_padding_mask)

        # Self-attention block (causal). With a cache the keys are the cache
        # (L_max long) and the causal mask at the cache index hides unwritten
        # steps, so the padding mask applies to the queries only.
        self_value_mask = (
            None if self_attention_cache is not None else (decoder_padding_mask)
        )

        def self_attend(x):
            return self.self_attention(
                x,
                x,
                query_mask=decoder_padding_mask,
                value_mask=self_value_mask,
                key_mask=self_attention_key_mask,
                use_causal_mask=True,
                return_attention_scores=return_attention_scores,
                cache=self_attention_cache,
                cache_update_index=self_attention_cache_update_index,
                head_mask=self_head_mask,
                training=training,
            )

        x, self_extras = self._residual(
            decoder_sequence,
            self_attend,
            self.self_attention_layer_norm,
            self.self_attention_dropout,
            training,
        )

        # Cross-attention block: queries from the decoder, keys and values
        # from the encoder, masked with the encoder's padding.
        def cross_attend(x):
            return self.cross_attention(
                x,
                encoder_sequence,
                query_mask=decoder_padding_mask,
                value_mask=encoder_padding_mask,
                return_attention_scores=return_attention_scores,
                cache=cross_attention_cache,
                head_mask=cross_head_mask,
                training=training,
            )

        x, cross_extras = self._residual(
            x,
            cross_attend,
            self.cross_attention_layer_norm,
            self.cross_attention_dropout,
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

        outputs = (x,)
        if return_attention_scores:
            outputs += (self_extras[0], cross_extras[0])
        if self_attention_cache is not None:
            outputs += (self_extras[-1],)
        return outputs[0] if len(outputs) == 1 else outputs

    def compute_output_shape(self, decoder_sequence_shape, encoder_sequence_shape=None):
        return tuple(decoder_sequence_shape)

    def compute_output_spec(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        encoder_padding_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        self_attention_key_mask=None,
        cross_attention_cache=None,
        return_attention_scores=False,
        self_head_mask=None,
        cross_head_mask=None,
        training=None,
        decoder_sequence_mask=None,
        encoder_sequence_mask=None,
    ):
        # `compute_output_shape` alone would give one output even when scores
        # or a cache are returned too (functional models, saving).
        outputs = (keras.KerasTensor(decoder_sequence.shape, dtype=self.compute_dtype),)
        if return_attention_scores:
            batch_size, length = decoder_sequence.shape[0], decoder_sequence.shape[1]
            self_length = length
            if self_attention_cache is not None:
                self_length = self_attention_cache[0].shape[2]  # L_max
            if cross_attention_cache is not None:
                source_length = cross_attention_cache[0].shape[2]  # S
            else:
                source_length = encoder_sequence.shape[1]
            for key_length in (self_length, source_length):
                shape = (batch_size, self.num_heads, length, key_length)
                outputs += (keras.KerasTensor(shape, dtype=self.compute_dtype),)
        if self_attention_cache is not None:
            outputs += (
                tuple(
                    keras.KerasTensor(c.shape, dtype=c.dtype)
                    for c in self_attention_cache
                ),
            )
        return outputs[0] if len(outputs) == 1 else outputs
