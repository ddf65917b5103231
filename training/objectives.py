"""Loss, metric and learning-rate schedule for translation training.

Shape legend: B batch, T target length, V target vocabulary.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mha")
class MaskedSparseCrossentropy(keras.losses.Loss):
    """Token-level cross-entropy with label smoothing that ignores padding.

    The mean runs over real (non-padding) target tokens of the batch, so
    short and long batches weigh each token equally.

    Args:
        label_smoothing: float, the mass spread uniformly over the vocabulary.
        padding_id: int, label id that is ignored.
    """

    def __init__(self, label_smoothing=0.1, padding_id=0, name="loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing
        self.padding_id = padding_id

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")  # (B, T)
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)  # (B,T,V)
        nll = -ops.take_along_axis(log_probs, y_true[..., None], axis=-1)[..., 0]
        smooth = -ops.mean(log_probs, axis=-1)  # (B, T)
        eps = self.label_smoothing
        loss = (1.0 - eps) * nll + eps * smooth
        mask = ops.cast(ops.not_equal(y_true, self.padding_id), loss.dtype)
        return ops.sum(loss * mask) / ops.maximum(ops.sum(mask), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"label_smoothing": self.label_smoothing, "padding_id": self.padding_id}
        )
        return config


@keras.saving.register_keras_serializable(package="keras_mha")
class MaskedAccuracy(keras.metrics.Metric):
    """Share of non-padding target tokens whose arg-max is right.

    Counted over every batch since the last reset, so a batch weighs by its
    real tokens: the same number on every backend. (A plain metric function
    is averaged per batch on JAX but weighted by the padding mask that the
    outputs carry on TensorFlow, and the two differ.) Padding is read from
    the labels; a mask on the predictions and `sample_weight` are ignored.

    Args:
        padding_id: int, label id that is ignored.
    """

    def __init__(self, padding_id=0, name="masked_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.padding_id = padding_id
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.tokens = self.add_variable(shape=(), initializer="zeros", name="tokens")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")  # (B, T)
        guesses = ops.cast(ops.argmax(y_pred, axis=-1), "int32")  # (B, T)
        real = ops.not_equal(y_true, self.padding_id)
        hits = ops.logical_and(ops.equal(guesses, y_true), real)
        self.hits.assign_add(ops.sum(ops.cast(hits, self.dtype)))
        self.tokens.assign_add(ops.sum(ops.cast(real, self.dtype)))

    def result(self):
        return self.hits / ops.maximum(self.tokens, 1.0)

    def get_config(self):
        return {**super().get_config(), "padding_id": self.padding_id}


@keras.saving.register_keras_serializable(package="keras_mha")
class WarmupInverseSqrt(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak_learning_rate`, then inverse square-root decay.

    `lr(step) = peak * min(step / warmup, sqrt(warmup / step))`.
    """

    def __init__(self, peak_learning_rate, warmup_steps):
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = ops.maximum(ops.cast(step, "float32") + 1.0, 1.0)
        warmup = ops.cast(self.warmup_steps, "float32")
        scale = ops.minimum(step / warmup, ops.sqrt(warmup / step))
        return self.peak_learning_rate * scale

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
        }
