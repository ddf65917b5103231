"""The encoder-decoder Transformer model with cached step-by-step decoding.

Shape legend: B batch, S source length, T target length, D model dim,
H heads, K key dim (D / H), V target vocabulary, N_e / N_d encoder /
decoder layers, L_max the self-attention cache length.
"""

import keras
from keras import ops

from keras_mha.decoder import TransformerDecoderLayer
from keras_mha.embedding import TokenAndPositionEmbedding
from keras_mha.encoder import TransformerEncoderLayer
from keras_mha.initializers import clone_initializer
from keras_mha.masks import padding_mask, segment_mask


def _head_mask(head_masks, kind, layer_index):
    if head_masks is None or head_masks.get(kind) is None:
        return None
    return head_masks[kind][layer_index]  # (H,)


@keras.saving.register_keras_serializable(package="keras_mha")
class Transformer(keras.Model):
    """Encoder-decoder Transformer for translation (Vaswani et al., 2017).

    All sizes come from the constructor, so the model is built on
    construction and saves and loads as a `.keras` file on every backend.

    Args:
        source_vocabulary_size: int.
        target_vocabulary_size: int, V.
        num_encoder_layers: int, N_e.
        num_decoder_layers: int, N_d.
        hidden_dim: int, D.
        intermediate_dim: int, feed-forward size.
        num_heads: int, H.
        dropout: float, on embeddings, attention weights and residuals.
        activation_dropout: float or None, on the feed-forward hidden layer;
            `None` uses `dropout`.
        max_length: int, longest source or target sequence (positions).
        position_embedding: "sinusoidal" or "learned".
        share_embeddings: bool, one embedding table for source and target
            (needs a joint vocabulary of equal size).
        tie_output: bool, output projection = transposed target embedding.
        normalize_first: bool, pre-LN (with a final layer norm) or post-LN.
        activation: feed-forward activation.
        layer_norm_epsilon: float.
        kernel_initializer: initializer of every dense kernel (attention,
            feed-forward, untied output projection).
        embeddings_initializer: initializer of the token tables; `None`
            draws them from N(0, 1/D).
        **kwargs: `keras.Model` arguments (`name`, `dtype`).

    Call arguments:
        inputs: dict with `"encoder_inputs"` `(B, S)` and `"decoder_inputs"`
            `(B, T)` int token ids, 0 = padding.
        return_attention_scores: bool.
        head_masks: optional dict with `"encoder"` `(N_e, H)`, `"decoder"` and
            `"cross"` `(N_d, H)` head multipliers (0 = head switched off).
        training: bool.

    Returns:
        `(B, T, V)` logits, or with `return_attention_scores` a dict with
        `"logits"`, `"encoder_attentions"` (N_e entries of `(B, H, S, S)`),
        `"decoder_attentions"` (N_d of `(B, H, T, T)`) and
        `"cross_attentions"` (N_d of `(B, H, T, S)`).

    Example:

    >>> model = Transformer(50, 60, 1, 1, hidden_dim=16, intermediate_dim=32,
    ...                     num_heads=2, max_length=10)
    >>> logits = model({"encoder_inputs": ops.ones((2, 7), "int32"),
    ...                 "decoder_inputs": ops.ones((2, 4), "int32")})
    >>> tuple(logits.shape)
    (2, 4, 60)
    """

    def __init__(
        self,
        source_vocabulary_size,
        target_vocabulary_size,
        num_encoder_layers=3,
        num_decoder_layers=3,
        hidden_dim=256,
        intermediate_dim=1024,
        num_heads=4,
        dropout=0.1,
        activation_dropout=None,
        max_length=128,
        position_embedding="sinusoidal",
        share_embeddings=False,
        tie_output=True,
        normalize_first=True,
        activation="relu",
        layer_norm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        embeddings_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if share_embeddings and source_vocabulary_size != target_vocabulary_size:
            raise ValueError(
                "`share_embeddings=True` needs one joint vocabulary. Received: "
                f"source_vocabulary_size={source_vocabulary_size}, "
                f"target_vocabulary_size={target_vocabulary_size}"
            )
        self.source_vocabulary_size = source_vocabulary_size
        self.target_vocabulary_size = target_vocabulary_size
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.activation_dropout = activation_dropout
        self.max_length = max_length
        self.position_embedding = position_embedding
        self.share_embeddings = share_embeddings
        self.tie_output = tie_output
        self.normalize_first = normalize_first
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.build()

    def build(self, inputs_shape=None):
        if self.built:
            return
        D = self.hidden_dim

        def embedding(name, vocabulary_size):
            layer = TokenAndPositionEmbedding(
                vocabulary_size,
                self.max_length,
                D,
                position_embedding=self.position_embedding,
                embeddings_initializer=clone_initializer(self.embeddings_initializer),
                dtype=self.dtype_policy,
                name=name,
            )
            layer.build((None, None))
            return layer

        self.source_embedding = embedding(
            "source_embedding", self.source_vocabulary_size
        )
        self.target_embedding = (
            self.source_embedding
            if self.share_embeddings
            else embedding("target_embedding", self.target_vocabulary_size)
        )
        self.embedding_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )
        layer_args = dict(
            intermediate_dim=self.intermediate_dim,
            num_heads=self.num_heads,
            dropout=self.dropout,
            activation_dropout=self.activation_dropout,
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            normalize_first=self.normalize_first,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
        )
        sequence_shape = (None, None, D)
        self.encoder_layers = []
        for i in range(self.num_encoder_layers):
            layer = TransformerEncoderLayer(name=f"encoder_layer_{i}", **layer_args)
            layer.build(sequence_shape)
            self.encoder_layers.append(layer)
        self.decoder_layers = []
        for i in range(self.num_decoder_layers):
            layer = TransformerDecoderLayer(name=f"decoder_layer_{i}", **layer_args)
            layer.build(sequence_shape, sequence_shape)
            self.decoder_layers.append(layer)
        # Pre-LN stacks end with a layer norm; post-LN layers already end in one.
        self.encoder_layer_norm = self.decoder_layer_norm = None
        if self.normalize_first:
            self.encoder_layer_norm = keras.layers.LayerNormalization(
                epsilon=self.layer_norm_epsilon,
                dtype=self.dtype_policy,
                name="encoder_layer_norm",
            )
            self.encoder_layer_norm.build(sequence_shape)
            self.decoder_layer_norm = keras.layers.LayerNormalization(
                epsilon=self.layer_norm_epsilon,
                dtype=self.dtype_policy,
                name="decoder_layer_norm",
            )
            self.decoder_layer_norm.build(sequence_shape)
        self.output_dense = None
        if not self.tie_output:
            self.output_dense = keras.layers.Dense(
                self.target_vocabulary_size,
                kernel_initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name="output_dense",
            )
            self.output_dense.build(sequence_shape)
        self.built = True

    # ------------------------------------------------------------ encoder
    def encode(
        self,
        encoder_inputs,
        training=None,
        return_attention_scores=False,
        head_masks=None,
        token_vectors=None,
        segments=None,
    ):
        """Runs the encoder once.

        Args:
            encoder_inputs: `(B, S)` token ids, 0 = padding.
            token_vectors: optional `(B, S, D)` in place of the scaled token
                embeddings (positions are still added), for attribution.
            segments: optional `(B, S)` int, sources packed in one row
                (`masks.segment_mask`): a token attends only to the tokens
                of its own segment id, and each segment's positions start at
                0. The outputs of each segment are those of its source
                encoded alone (to float rounding).

        Returns:
            `(B, S, D)` encoder outputs; with `return_attention_scores` also
            a list of N_e `(B, H, S, S)` scores.
        """
        mask = padding_mask(encoder_inputs)  # (B, S)
        attention_mask, positions = None, None
        if segments is not None:
            attention_mask, positions = segment_mask(segments)  # (B, S, S), (B, S)
        x = self.source_embedding(
            encoder_inputs, token_vectors=token_vectors, positions=positions
        )
        x = self.embedding_dropout(x, training=training)
        attentions = []
        for i, layer in enumerate(self.encoder_layers):
            x = layer(
                x,
                padding_mask=mask,
                attention_mask=attention_mask,
                return_attention_scores=return_attention_scores,
                head_mask=_head_mask(head_masks, "encoder", i),
                training=training,
            )
            if return_attention_scores:
                x, scores = x
                attentions.append(scores)
        if self.encoder_layer_norm is not None:
            x = self.encoder_layer_norm(x)
        return (x, attentions) if return_attention_scores else x

    def logits(self, hidden):
        """Decoder states -> logits: the final normalisation (pre-LN) and the
        output projection, `(B, T, D)` -> `(B, T, V)`. Applied to any decoder
        layer's output it gives what that layer would predict (logit lens)."""
        return self._logits(hidden)

    def _logits(self, x):
        if self.decoder_layer_norm is not None:
            x = self.decoder_layer_norm(x)
        if self.output_dense is not None:
            return self.output_dense(x)  # (B, T, V)
        return self.target_embedding.logits(x)  # (B, T, V)

    # ------------------------------------------------------------ full pass
    def call(
        self,
        inputs,
        training=None,
        return_attention_scores=False,
        head_masks=None,
        token_vectors=None,
        return_hidden_states=False,
    ):
        """The teacher-forced pass: `(B, T, V)` logits.

        `token_vectors` (`{"source": (B, S, D), "target": (B, T, D)}`)
        replace the scaled token embeddings (attribution); with
        `return_attention_scores` the result is a dict with the attention
        of every layer, and with `return_hidden_states` also
        `"hidden_states"`, each decoder layer's `(B, T, D)` output.
        """
        encoder_inputs = inputs["encoder_inputs"]
        decoder_inputs = inputs["decoder_inputs"]
        token_vectors = token_vectors or {}
        encoded = self.encode(
            encoder_inputs,
            training=training,
            return_attention_scores=return_attention_scores,
            head_masks=head_masks,
            token_vectors=token_vectors.get("source"),
        )
        encoder_attentions = []
        if return_attention_scores:
            encoded, encoder_attentions = encoded
        encoder_mask = padding_mask(encoder_inputs)  # (B, S)
        decoder_mask = padding_mask(decoder_inputs)  # (B, T)
        x = self.target_embedding(
            decoder_inputs, token_vectors=token_vectors.get("target")
        )  # (B, T, D)
        x = self.embedding_dropout(x, training=training)
        decoder_attentions, cross_attentions, hidden_states = [], [], []
        for i, layer in enumerate(self.decoder_layers):
            x = layer(
                x,
                encoded,
                decoder_padding_mask=decoder_mask,
                encoder_padding_mask=encoder_mask,
                return_attention_scores=return_attention_scores,
                self_head_mask=_head_mask(head_masks, "decoder", i),
                cross_head_mask=_head_mask(head_masks, "cross", i),
                training=training,
            )
            if return_attention_scores:
                x, self_scores, cross_scores = x
                decoder_attentions.append(self_scores)
                cross_attentions.append(cross_scores)
            hidden_states.append(x)
        logits = self._logits(x)
        if not (return_attention_scores or return_hidden_states):
            return logits
        result = {"logits": logits}
        if return_attention_scores:
            result.update(
                encoder_attentions=encoder_attentions,
                decoder_attentions=decoder_attentions,
                cross_attentions=cross_attentions,
            )
        if return_hidden_states:
            result["hidden_states"] = hidden_states
        return result

    # ------------------------------------------------------------ decoding
    def init_cache(self, encoder_outputs, max_length):
        """Precomputes cross-attention keys/values and an empty self cache.

        Args:
            encoder_outputs: `(B, S, D)` from `encode`.
            max_length: int, L_max, how many target steps the cache holds.

        Returns:
            `(self_cache, cross_cache)`, one `(keys, values)` pair per decoder
            layer each: N_d pairs of `(B, H, L_max, K)` zeros and N_d pairs
            of `(B, H, S, K)` projected encoder keys and values. Separate
            buffers per layer, keys apart from values: a decoding loop
            updates each in place (a stacked tensor would be rebuilt, and
            sliced apart, at every step).
        """
        batch_size = ops.shape(encoder_outputs)[0]
        key_dim = self.hidden_dim // self.num_heads
        shape = (batch_size, self.num_heads, max_length, key_dim)
        self_cache = [
            (ops.zeros(shape, self.compute_dtype), ops.zeros(shape, self.compute_dtype))
            for _ in self.decoder_layers
        ]  # N_d x 2 x (B, H, L_max, K)
        cross_cache = [
            layer.cross_attention.compute_key_value(encoder_outputs)
            for layer in self.decoder_layers
        ]  # N_d x 2 x (B, H, S, K)
        return self_cache, cross_cache

    def decode_step(
        self,
        token_ids,
        index,
        self_cache,
        cross_cache,
        encoder_padding_mask,
        return_attention_scores=False,
        head_masks=None,
        positions=None,
        self_attention_key_mask=None,
    ):
        """Decodes the next position(s) with the caches: O(L_max) per step.

        Args:
            token_ids: `(B, T_new)` ids at positions `index ... index+T_new-1`
                (usually `T_new = 1`).
            index: int or scalar int tensor, position of `token_ids[:, 0]`.
            self_cache: N_d `(keys, values)` pairs, each `(B, H, L_max, K)`
                (`init_cache`).
            cross_cache: N_d `(keys, values)` pairs, each `(B, H, S, K)`.
            encoder_padding_mask: `(B, S)` boolean.
            positions: optional `(B,)` int, each row's position of
                `token_ids[:, 0]` when rows are at different steps; `index`
                is then only the cache column written, and
                `self_attention_key_mask` `(B, L_max)` bool says which cache
                columns each row sees (`decoding.RefillGreedySearch`).

        Returns:
            `(logits, self_cache)` with logits `(B, T_new, V)` and the
            updated self cache (a list of N_d pairs); with
            `return_attention_scores`, `(logits, self_cache, decoder_scores,
            cross_scores)` with scores `(N_d, B, H, T_new, L_max)` and
            `(N_d, B, H, T_new, S)`.
        """
        start = index if positions is None else positions
        x = self.target_embedding(token_ids, start_index=start)  # (B, T_new, D)
        new_caches, decoder_scores, cross_scores = [], [], []
        for i, layer in enumerate(self.decoder_layers):
            outputs = layer(
                x,
                encoder_padding_mask=encoder_padding_mask,
                self_attention_cache=self_cache[i],
                self_attention_cache_update_index=index,
                self_attention_key_mask=self_attention_key_mask,
                cross_attention_cache=cross_cache[i],
                return_attention_scores=return_attention_scores,
                self_head_mask=_head_mask(head_masks, "decoder", i),
                cross_head_mask=_head_mask(head_masks, "cross", i),
            )
            x, new_cache = outputs[0], outputs[-1]
            new_caches.append(new_cache)
            if return_attention_scores:
                decoder_scores.append(outputs[1])
                cross_scores.append(outputs[2])
        logits = self._logits(x)  # (B, T_new, V)
        self_cache = [tuple(cache) for cache in new_caches]  # N_d x 2 x (B, H, L, K)
        if not return_attention_scores:
            return logits, self_cache
        return (
            logits,
            self_cache,
            ops.stack(decoder_scores, axis=0),  # (N_d, B, H, T_new, L_max)
            ops.stack(cross_scores, axis=0),  # (N_d, B, H, T_new, S)
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "source_vocabulary_size": self.source_vocabulary_size,
                "target_vocabulary_size": self.target_vocabulary_size,
                "num_encoder_layers": self.num_encoder_layers,
                "num_decoder_layers": self.num_decoder_layers,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "activation_dropout": self.activation_dropout,
                "max_length": self.max_length,
                "position_embedding": self.position_embedding,
                "share_embeddings": self.share_embeddings,
                "tie_output": self.tie_output,
                "normalize_first": self.normalize_first,
                "activation": self.activation,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
