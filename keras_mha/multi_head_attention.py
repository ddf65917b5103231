"""Multi-head attention, written out by hand with `keras.ops`.

Shape legend: B batch, T query length, S key/value length, D model dim
(query features), H heads, K key dim per head, V value dim per head,
O output features.
"""

import math

import keras
from keras import ops

from keras_mha import backend_config
from keras_mha.initializers import clone_initializer
from keras_mha.masks import merge_masks


def _large_negative(dtype):
    """The masked-score fill: -1e9, or -3e4 where float16 would overflow."""
    value = -3e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9
    return ops.cast(value, dtype)


def _heads_first(x):
    """`(B, S, H, K)` -> `(B, H, S, K)`, the layout of a cache."""
    return ops.transpose(x, (0, 2, 1, 3))


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"positive integer. Received: {name}={value}"
        )


@keras.saving.register_keras_serializable(package="keras_mha")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention (Vaswani et al., 2017).

    A from-scratch layer whose constructor, call signature and weights
    (query, key, value and output kernels and biases, in that order and with
    the same shapes) match `keras.layers.MultiHeadAttention`, so
    `ours.set_weights(builtin.get_weights())` works. On top of that it has a
    key/value cache for step-by-step decoding and per-head output gating
    (`head_mask`) for head ablation.

    Args:
        num_heads: int, number of attention heads H.
        key_dim: int, size of each head for query and key, K.
        value_dim: int, size of each head for value, V. Defaults to `key_dim`.
        dropout: float, dropout rate on the attention weights.
        use_bias: bool, whether the projections use biases.
        output_shape: int, the output feature size O. Defaults to the
            query's last dimension.
        kernel_initializer: initializer for the four kernels.
        bias_initializer: initializer for the four biases.
        kernel_regularizer, bias_regularizer: optional regularizers.
        kernel_constraint, bias_constraint: optional constraints.
        seed: optional int, seed of the attention dropout.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        query: `(B, T, D)` query sequence.
        value: `(B, S, D_v)` value sequence. May be `None` when `cache` holds
            precomputed cross-attention keys and values.
        key: optional `(B, S, D_k)` key sequence; defaults to `value`.
        query_mask, value_mask, key_mask: optional `(B, T)` / `(B, S)`
            boolean padding masks (`True` = real token). Filled in from the
            inputs' Keras masks when an `Embedding(mask_zero=True)` is
            upstream.
        attention_mask: optional `(B, T, S)` boolean mask, `True` = may
            attend.
        return_attention_scores: bool, also return the `(B, H, T, S)`
            attention weights.
        training: bool, dropout on or off.
        use_causal_mask: bool, query `t` only sees keys `<= t` (plus the
            cache offset when decoding).
        cache: optional `(keys, values)`, two `(B, H, S_max, K)` tensors,
            heads before positions: the layout that a decoding step's q·k
            and weighted sum read without a transpose (a `(B, S, H, K)`
            cache is transposed whole at every step). With
            `cache_update_index` it is a self-attention cache: the new keys
            and values of `query`'s `T` steps are written at that index and
            attention runs over the whole cache, hiding the columns after
            that index (causal), or, with a `key_mask` `(B, S_max)`, every
            column the mask does not show (rows of one cache at different
            steps). Without it the cache is used as precomputed keys/values
            (cross-attention) and `value`/`key` are ignored.
        cache_update_index: int or scalar tensor, position of `query[:, 0]`
            (the cache column it is written to).
        head_mask: optional `(H,)` or `(B, H)` float multipliers of each
            head's output (0 switches a head off).

    Returns:
        `output` `(B, T, O)`; with `return_attention_scores`, `(output,
        scores)`; with `cache`, the (updated) cache is appended:
        `(output, cache)` or `(output, scores, cache)`.

    Example:

    >>> layer = MultiHeadAttention(num_heads=2, key_dim=4)
    >>> x = keras.random.normal((3, 5, 8))
    >>> y, scores = layer(x, x, return_attention_scores=True)
    >>> tuple(y.shape), tuple(scores.shape)
    ((3, 5, 8), (3, 2, 5, 5))
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_positive_int("num_heads", num_heads)
        _check_positive_int("key_dim", key_dim)
        if value_dim is not None:
            _check_positive_int("value_dim", value_dim)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(
                "Received an invalid value for argument `dropout`, expected a "
                f"float in [0, 1). Received: dropout={dropout}"
            )
        if isinstance(output_shape, (tuple, list)):
            if len(output_shape) != 1:
                raise ValueError(
                    "Only a 1-D `output_shape` is supported. "
                    f"Received: output_shape={output_shape}"
                )
            output_shape = output_shape[0]
        if output_shape is not None:
            _check_positive_int("output_shape", output_shape)
        self.supports_masking = True
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim if value_dim else key_dim
        self.dropout = dropout
        self.use_bias = use_bias
        self._output_shape = output_shape
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.seed = seed
        self.dropout_layer = keras.layers.Dropout(
            dropout, seed=seed, dtype=self.dtype_policy, name="dropout_layer"
        )

    # ------------------------------------------------------------------ build
    def _add_projection(self, name, kernel_shape, bias_shape):
        kernel = self.add_weight(
            name=f"{name}_kernel",
            shape=kernel_shape,
            initializer=clone_initializer(self.kernel_initializer),
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        bias = None
        if self.use_bias:
            bias = self.add_weight(
                name=f"{name}_bias",
                shape=bias_shape,
                initializer=clone_initializer(self.bias_initializer),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        return kernel, bias

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        for name, shape in (
            ("query", query_shape),
            ("value", value_shape),
            ("key", key_shape),
        ):
            if len(shape) != 3:
                raise ValueError(
                    f"`{name}` must have rank 3 (batch, length, features). "
                    f"Received: {name}.shape={tuple(shape)}"
                )
        self.query_dim = query_shape[-1]
        self.key_input_dim = key_shape[-1]
        self.value_input_dim = value_shape[-1]
        self.output_dim = self._output_shape or self.query_dim
        H, K, V = self.num_heads, self.key_dim, self.value_dim
        # Same variables, order and shapes as keras.layers.MultiHeadAttention
        # (whose EinsumDense layers hold one kernel and one bias each).
        self.query_kernel, self.query_bias = self._add_projection(
            "query", (self.query_dim, H, K), (H, K)
        )
        self.key_kernel, self.key_bias = self._add_projection(
            "key", (self.key_input_dim, H, K), (H, K)
        )
        self.value_kernel, self.value_bias = self._add_projection(
            "value", (self.value_input_dim, H, V), (H, V)
        )
        self.output_kernel, self.output_bias = self._add_projection(
            "attention_output", (H, V, self.output_dim), (self.output_dim,)
        )
        self.dropout_layer.build(None)
        self.built = True

    # ------------------------------------------------------------- pieces
    def _project(self, x, kernel, bias):
        if backend_config.uses(backend_config.MATMUL_PROJECTIONS):
            input_dim, num_heads, head_dim = kernel.shape
            kernel = ops.reshape(kernel, (input_dim, num_heads * head_dim))
            x = ops.matmul(x, kernel)  # (B, S, H * K)
            # Batch and length may be unknown while tracing.
            x = ops.reshape(x, ops.shape(x)[:-1] + (num_heads, head_dim))  # (B,S,H,K)
        else:
            x = ops.einsum("bsd,dhk->bshk", x, kernel)  # (B, S, H, K)
        return x if bias is None else x + bias

    def _project_output(self, context):
        if backend_config.uses(backend_config.MATMUL_PROJECTIONS):
            num_heads, head_dim, output_dim = self.output_kernel.shape
            kernel = ops.reshape(self.output_kernel, (num_heads * head_dim, output_dim))
            shape = ops.shape(context)[:-2] + (num_heads * head_dim,)
            context = ops.reshape(context, shape)  # (B, T, H * V)
            output = ops.matmul(context, kernel)  # (B, T, O)
        else:
            output = ops.einsum("bthv,hvo->bto", context, self.output_kernel)  # (B,T,O)
        return output if self.output_bias is None else output + self.output_bias

    def _check_features(self, name, tensor, expected):
        if tensor.shape[-1] is not None and tensor.shape[-1] != expected:
            raise ValueError(
                f"`{name}` has {tensor.shape[-1]} features but the layer was "
                f"built for {expected}. Received: {name}.shape={tensor.shape}"
            )
        if len(tensor.shape) != 3:
            raise ValueError(
                f"`{name}` must have rank 3 (batch, length, features). "
                f"Received: {name}.shape={tensor.shape}"
            )

    def compute_key_value(self, value, key=None):
        """Projects keys and values once, e.g. the encoder output for
        cross-attention during decoding.

        Args:
            value: `(B, S, D_v)`.
            key: optional `(B, S, D_k)`, defaults to `value`.

        Returns:
            A cache `(keys, values)`, each `(B, H, S, K)`.
        """
        self._check_cacheable()
        key = value if key is None else key
        self._check_features("value", value, self.value_input_dim)
        self._check_features("key", key, self.key_input_dim)
        key = self._project(key, self.key_kernel, self.key_bias)  # (B, S, H, K)
        value = self._project(value, self.value_kernel, self.value_bias)
        return _heads_first(key), _heads_first(value)  # (B, H, S, K) each

    def _check_cacheable(self):
        if self.key_dim != self.value_dim:
            raise ValueError(
                "A key/value cache needs `key_dim == value_dim`. Received: "
                f"key_dim={self.key_dim}, value_dim={self.value_dim}"
            )

    def _check_mask(self, name, mask, expected):
        if mask is None:
            return
        shape = tuple(mask.shape)
        ok = len(shape) == len(expected) and all(
            s is None or e is None or s in (e, 1) for s, e in zip(shape, expected)
        )
        if not ok:
            raise ValueError(
                f"`{name}` must have shape {expected} (batch, "
                f"{'queries, keys' if len(expected) == 3 else 'length'}). "
                f"Received: {name}.shape={shape}"
            )

    def _attend(
        self,
        query,
        key,
        value,
        mask,
        return_scores,
        training,
        causal_only=False,
        heads_first=False,
    ):
        """Scaled dot-product attention of projected heads.

        Args:
            query: `(B, T, H, K)`; key: `(B, S, H, K)`; value: `(B, S, H, V)`.
            mask: boolean, broadcastable to `(B, T, S)`, or None.
            causal_only: `mask` is just the causal mask, so the fused kernel
                can take `is_causal=True` instead of a mask tensor.
            heads_first: key and value are `(B, H, S, K)` and `(B, H, S, V)`
                (a cache); the explicit path reads them as they are.

        Returns:
            context `(B, T, H, V)` and scores `(B, H, T, S)` (or None).
        """
        dropout_active = self.dropout > 0.0 and bool(training)
        if (
            not return_scores
            and not heads_first
            and not dropout_active
            and self.key_dim == self.value_dim
            and backend_config.uses(backend_config.FUSED_ATTENTION)
        ):
            fused_mask = None
            if mask is not None and not causal_only:
                fused_mask = ops.expand_dims(mask, 1)  # (B, 1, T, S)
            context = ops.dot_product_attention(
                query,
                key,
                value,
                mask=fused_mask,
                scale=1.0 / math.sqrt(self.key_dim),
                is_causal=causal_only,
            )  # (B, T, H, V)
            if mask is not None:
                # The fused op spreads a fully masked row evenly over the
                # masked keys; zero it as the explicit path does.
                has_key = ops.any(mask, axis=-1)[:, :, None, None]  # (B, T, 1, 1)
                context = ops.where(has_key, context, ops.zeros_like(context))
            return context, None

        # Scale the queries (not the scores) as Keras MHA does: same numerics.
        query = ops.multiply(
            query, ops.cast(1.0 / math.sqrt(self.key_dim), query.dtype)
        )
        if heads_first:
            scores = ops.einsum("bthk,bhsk->bhts", query, key)  # (B, H, T, S)
        else:
            scores = ops.einsum("bthk,bshk->bhts", query, key)  # (B, H, T, S)
        if mask is not None:
            mask = ops.expand_dims(mask, 1)  # (B, 1, T, S)
            # An additive bias (built at mask size, broadcast over heads) is
            # cheaper to differentiate than a `where` on the scores. A large
            # finite negative rather than -inf: a fully masked row stays
            # finite (no NaN), and masked keys still get exp(...) == 0.
            bias = ops.where(
                mask,
                ops.cast(0.0, scores.dtype),
                _large_negative(scores.dtype),
            )  # (B, 1, T, S)
            scores = scores + bias
        # In float32 under a mixed (bfloat16/float16) policy: the sums of
        # exponentials lose too much in 8 bits of mantissa.
        weights = ops.cast(
            ops.softmax(ops.cast(scores, "float32"), axis=-1), scores.dtype
        )  # (B, H, T, S)
        if mask is not None:
            # Masked keys already get exactly zero (exp underflows); a fully
            # masked row would be uniform, so zero it. A (B, 1, T, 1) factor
            # is cheaper than a second full-size `where` in training.
            has_key = ops.any(mask, axis=-1, keepdims=True)  # (B, 1, T, 1)
            weights = weights * ops.cast(has_key, weights.dtype)
        dropped = self.dropout_layer(weights, training=training)
        if heads_first:
            context = ops.einsum("bhts,bhsv->bthv", dropped, value)  # (B, T, H, V)
        else:
            context = ops.einsum("bhts,bshv->bthv", dropped, value)  # (B, T, H, V)
        return context, weights

    # ------------------------------------------------------------------ call
    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
        cache=None,
        cache_update_index=None,
        head_mask=None,
        return_stages=False,
    ):
        """Attention of `query` over `key`/`value`; see the class docstring.

        With `return_stages` (a full pass, no cache) the result is
        `(output, stages)`, `stages` a dict of this call's intermediate
        tensors, for showing how the weights come about: `"query"` `(B, T,
        H, K)` projected queries, `"key"` `(B, S, H, K)`, `"value"` `(B, S,
        H, V)`, `"mask"` the boolean `(B, T, S)` mask (or None), `"weights"`
        `(B, H, T, S)`, `"context"` `(B, T, H, V)` each head's output (after
        `head_mask`) and `"output"` `(B, T, O)`. The explicit path runs (not
        the fused kernel), so that the weights exist.
        """
        self._check_features("query", query, self.query_dim)
        batch_size, query_length = query.shape[0], query.shape[1]
        causal_offset = None

        if cache is not None and cache_update_index is None:
            # Cross-attention over precomputed keys and values.
            self._check_cacheable()
            key, value = cache  # (B, H, S, K) each
        else:
            if key is None:
                key = value
            self._check_features("value", value, self.value_input_dim)
            self._check_features("key", key, self.key_input_dim)
            key = self._project(key, self.key_kernel, self.key_bias)  # (B,S,H,K)
            value = self._project(value, self.value_kernel, self.value_bias)
            if cache is not None:
                # Self-attention cache: write this step, attend to the cache.
                self._check_cacheable()
                start = [0, 0, cache_update_index, 0]
                key = ops.slice_update(cache[0], start, _heads_first(key))
                value = ops.slice_update(cache[1], start, _heads_first(value))
                cache = (key, value)  # (B, H, S_max, K) each
                # Keys past the last written step are never visible: the
                # causal mask with this offset hides them, unless the
                # caller's `key_mask` says which columns each row sees.
                use_causal_mask = key_mask is None
                causal_offset = cache_update_index if use_causal_mask else None
        length_axis = 1 if cache is None else 2  # keys: (B, S, H, K) or a cache
        key_length = key.shape[length_axis]
        # Lengths may be unknown while tracing (TensorFlow buckets).
        query_length_value = ops.shape(query)[1]
        key_length_value = ops.shape(key)[length_axis]

        self._check_mask("query_mask", query_mask, (batch_size, query_length))
        self._check_mask("value_mask", value_mask, (batch_size, key_length))
        self._check_mask("key_mask", key_mask, (batch_size, key_length))
        self._check_mask(
            "attention_mask", attention_mask, (batch_size, query_length, key_length)
        )
        mask = merge_masks(
            query_length_value,
            key_length_value,
            query_mask=query_mask,
            value_mask=value_mask,
            key_mask=key_mask,
            attention_mask=attention_mask,
            use_causal_mask=use_causal_mask,
            causal_offset=causal_offset,
        )

        query = self._project(query, self.query_kernel, self.query_bias)  # (B,T,H,K)
        causal_only = (
            use_causal_mask
            and cache is None
            and query_mask is None
            and value_mask is None
            and key_mask is None
            and attention_mask is None
        )
        context, scores = self._attend(
            query,
            key,
            value,
            mask,
            return_attention_scores or return_stages,
            training,
            causal_only,
            heads_first=cache is not None,
        )  # (B, T, H, V), (B, H, T, S)
        if head_mask is not None:
            head_mask = ops.cast(head_mask, context.dtype)
            if len(head_mask.shape) == 1:
                head_mask = ops.expand_dims(head_mask, 0)  # (1, H)
            context = context * head_mask[:, None, :, None]  # (B, T, H, V)
        output = self._project_output(context)  # (B, T, O)
        if return_stages:
            stages = dict(
                query=query,
                key=key,
                value=value,
                mask=mask,
                weights=scores,
                context=context,
                output=output,
            )
            return output, stages

        outputs = (output,)
        if return_attention_scores:
            outputs += (scores,)
        if cache is not None:
            outputs += (cache,)
        return outputs[0] if len(outputs) == 1 else outputs

    # ---------------------------------------------------------------- shapes
    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        output_dim = self._output_shape or query_shape[-1]
        return tuple(query_shape[:-1]) + (output_dim,)

    def compute_output_spec(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
        cache=None,
        cache_update_index=None,
        head_mask=None,
    ):
        output = keras.KerasTensor(
            self.compute_output_shape(query.shape), dtype=self.compute_dtype
        )
        outputs = (output,)
        if return_attention_scores:
            if cache is not None:
                key_length = cache[0].shape[2]  # (B, H, S_max, K)
            else:
                key_length = (value if key is None else key).shape[1]
            scores_shape = (query.shape[0], self.num_heads, query.shape[1], key_length)
            outputs += (keras.KerasTensor(scores_shape, dtype=self.compute_dtype),)
        if cache is not None:
            outputs += (
                tuple(keras.KerasTensor(c.shape, dtype=c.dtype) for c in cache),
            )
        return outputs[0] if len(outputs) == 1 else outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "output_shape": self._output_shape,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(
                    self.kernel_constraint
                ),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
                "seed": self.seed,
            }
        )
        return config
