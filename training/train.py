"""Train a translation Transformer: `python -m training.train --dataset spa-eng`.

The defaults of each dataset reproduce the shipped model of that pair. Runs
on every Keras backend (`KERAS_BACKEND=jax|tensorflow|torch`); checkpoints
every epoch (atomically) and continues with `--resume` after a crash.

Output folder:
    model.keras        the final model (no optimizer state), loadable anywhere
    spm.model          SentencePiece tokenizer (+ spm.vocab.txt, plain text)
    metrics.json       training and evaluation figures
    model_card.md      how the model was made and how good it is
    checkpoints/       last.keras (with optimizer), epoch weights, state.json
    logs/              TensorBoard logs
"""

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import pathlib
import platform
import shlex
import sys
import time

import keras
import numpy as np
import sentencepiece

from keras_mha.transformer import Transformer
from training import data as data_lib
from training import tokenizers as tokenizers_lib
from training.evaluate import write_model_card
from training.objectives import (
    MaskedSparseCrossentropy,
    WarmupInverseSqrt,
    masked_accuracy,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; flags override the defaults."""

    dataset: str = "spa-eng"  # A key of training.data.DATASETS.
    out: str = "saved_models/en-es"  # Output folder.
    data_dir: str | None = None  # Corpus folder; see data.resolve_data_dir.
    vocabulary_size: int = 8000  # Joint SentencePiece BPE vocabulary.
    num_layers: int = 3  # Encoder layers = decoder layers.
    hidden_dim: int = 256  # d_model.
    intermediate_dim: int = 1024  # Feed-forward size.
    num_heads: int = 4  # Attention heads per layer.
    dropout: float = 0.1  # Embeddings, attention weights, residual branches.
    # Feed-forward hidden layer; None: `dropout` (as the shipped models).
    activation_dropout: float | None = None
    normalize_first: bool = True  # Pre-LN (True) or post-LN (False).
    max_length: int = 64  # Longest source/target in tokens (longer: cut).
    batch_tokens: int = 4096  # Token budget of a batch (per side, padded).
    epochs: int = 10  # Passes over the training data.
    learning_rate: float = 1e-3  # Peak learning rate after warmup.
    warmup_steps: int = 1000  # Linear warmup, then inverse square root.
    label_smoothing: float = 0.1  # Uniform mass in the targets.
    seed: int = 0  # Seeds Keras, NumPy, shuffling and the tokenizer.
    average_last: int = 3  # Average the weights of the last k epochs (1: off).
    max_train_pairs: int | None = None  # Cap on training pairs (tests).
    time_budget_minutes: float | None = None  # Stop after this, at an epoch end.
    resume: bool = False  # Continue from out/checkpoints/last.keras.
    distribute: bool = False  # Data parallel over all local devices.
    host_devices: int = 0  # >1: split the CPU into this many devices (tests).
    # "tf" (tf.data, tokenizing in the graph), "numpy" (keras.utils.PyDataset,
    # for machines without TensorFlow) or "auto" (tf where it is installed).
    input_pipeline: str = "auto"


# Defaults per dataset: what the shipped models were trained with, each in
# one run of 110 minutes of training time on the 2-core CPU (en-es on one
# core, en-de on both; see each model card).
_SHIPPED = dict(
    num_layers=2,
    hidden_dim=256,
    intermediate_dim=1024,
    num_heads=4,
    batch_tokens=2048,
    learning_rate=1.5e-3,
    warmup_steps=400,
    time_budget_minutes=110,
)
# Multi30k is small (29,000 pairs): a deeper, narrower model (Wu et al.'s
# Transformer-Tiny shape) gets more epochs out of the same time.
_MULTI30K = dict(
    _SHIPPED,
    num_layers=4,
    hidden_dim=128,
    intermediate_dim=512,
    vocabulary_size=5000,
    dropout=0.2,
    epochs=80,
    average_last=10,
)
DATASET_DEFAULTS = {
    "spa-eng": dict(
        _SHIPPED,
        out="saved_models/en-es",
        vocabulary_size=6000,
        dropout=0.1,
        epochs=30,
    ),
    "deu-eng": dict(_SHIPPED, vocabulary_size=8000, dropout=0.1, epochs=30),
    "fra-eng": dict(_SHIPPED, vocabulary_size=8000, dropout=0.1, epochs=30),
    "multi30k-en-de": dict(_MULTI30K, out="saved_models/en-de"),
    "multi30k-en-fr": dict(_MULTI30K, out="saved_models/en-fr"),
}


def parse_config(argv=None):
    """Builds a `TrainConfig` from command-line flags and dataset defaults."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name, field in fields.items():
        flag = "--" + name.replace("_", "-")
        annotation = str(field.type)
        if field.type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction)
        elif "int" in annotation:
            parser.add_argument(flag, type=int)
        elif "float" in annotation:
            parser.add_argument(flag, type=float)
        else:
            parser.add_argument(flag, type=str)
    args = parser.parse_args(argv)
    values = dict(DATASET_DEFAULTS.get(args.dataset or TrainConfig.dataset, {}))
    values.update({k: v for k, v in vars(args).items() if v is not None})
    return TrainConfig(**values)


# ---------------------------------------------------------------- pieces
def prepare_tokenizer(config, train_pairs):
    """Trains the joint tokenizer once (reused on `--resume`)."""
    out = pathlib.Path(config.out)
    model_path = out / "spm.model"
    if not model_path.exists():
        texts = [s for s, _ in train_pairs] + [t for _, t in train_pairs]
        tokenizers_lib.train_tokenizer(
            texts, config.vocabulary_size, out, name="spm", seed=config.seed
        )
    return model_path


def input_pipeline(config):
    """`"tf"` or `"numpy"`: `config.input_pipeline`, with "auto" resolved."""
    if config.input_pipeline not in ("auto", "tf", "numpy"):
        raise ValueError(
            "Received an invalid value for argument `input_pipeline`, expected "
            f'"auto", "tf" or "numpy". Received: input_pipeline={config.input_pipeline}'
        )
    if config.input_pipeline != "auto":
        return config.input_pipeline
    return "tf" if importlib.util.find_spec("tensorflow") else "numpy"


def make_datasets(config, tokenizer_path, train_pairs, valid_pairs, devices=1):
    """The input pipelines for training and validation. With several
    devices every batch splits evenly (validation drops its remainders)."""
    args = dict(
        max_tokens=config.batch_tokens,
        max_length=config.max_length,
        batch_multiple=devices,
    )
    if input_pipeline(config) == "numpy":
        # Python lists of ids in, a keras.utils.PyDataset of NumPy arrays out.
        tokenize = sentencepiece.SentencePieceProcessor(
            model_file=str(tokenizer_path)
        ).encode
        make = data_lib.BucketedBatches
    else:
        # String tensors in, ragged ids out, inside tf.data.
        tokenize = tokenizers_lib.load_tokenizer(tokenizer_path)
        make = data_lib.make_dataset
    train_ds = make(train_pairs, tokenize, tokenize, seed=config.seed, **args)
    valid_ds = make(
        valid_pairs,
        tokenize,
        tokenize,
        shuffle=False,
        drop_remainder=devices > 1,
        **args,
    )
    return train_ds, valid_ds


def build_model(config, vocabulary_size):
    """The Transformer of `config` with a shared, tied joint vocabulary."""
    return Transformer(
        source_vocabulary_size=vocabulary_size,
        target_vocabulary_size=vocabulary_size,
        num_encoder_layers=config.num_layers,
        num_decoder_layers=config.num_layers,
        hidden_dim=config.hidden_dim,
        intermediate_dim=config.intermediate_dim,
        num_heads=config.num_heads,
        dropout=config.dropout,
        activation_dropout=config.activation_dropout,
        max_length=config.max_length,
        share_embeddings=True,
        tie_output=True,
        normalize_first=config.normalize_first,
        name="transformer",
    )


def compile_model(model, config):
    model.compile(
        optimizer=keras.optimizers.Adam(
            WarmupInverseSqrt(config.learning_rate, config.warmup_steps),
            beta_1=0.9,
            beta_2=0.98,
            epsilon=1e-9,
            clipnorm=1.0,
        ),
        loss=MaskedSparseCrossentropy(config.label_smoothing),
        metrics=[masked_accuracy],
    )
    return model


def atomic_write_text(path, text):
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_save(model, path):
    """Saves a model or weights via a temporary file and a rename."""
    path = pathlib.Path(path)
    tmp = path.with_name("tmp-" + path.name)
    if path.name.endswith(".weights.h5"):
        model.save_weights(tmp)
    else:
        model.save(tmp)
    os.replace(tmp, path)


class Checkpoint(keras.callbacks.Callback):
    """Every epoch: `last.keras` (with optimizer), the epoch's weights for
    averaging, the best weights by validation loss and `state.json`."""

    def __init__(self, directory, average_last, state):
        super().__init__()
        self.directory = pathlib.Path(directory)
        self.average_last = average_last
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        d = self.directory
        atomic_save(self.model, d / f"epoch_{epoch + 1:03d}.weights.h5")
        stale = d / f"epoch_{epoch + 1 - self.average_last:03d}.weights.h5"
        if self.average_last > 0 and stale.exists():
            stale.unlink()
        val_loss = float(logs.get("val_loss", logs.get("loss", np.inf)))
        history = self.state.setdefault("history", [])
        history.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        if val_loss < self.state.get("best_val_loss", np.inf):
            self.state.update(best_val_loss=val_loss, best_epoch=epoch + 1)
            atomic_save(self.model, d / "best.weights.h5")
        atomic_save(self.model, d / "last.keras")
        self.state.update(
            epoch=epoch + 1,
            step=int(self.model.optimizer.iterations.numpy()),
            train_seconds=self.state.get("train_seconds", 0.0)
            + time.time()
            - self.state["_epoch_start"],
        )
        self.state["_epoch_start"] = time.time()
        atomic_write_text(
            d / "state.json",
            json.dumps({k: v for k, v in self.state.items() if k[0] != "_"}, indent=1),
        )


class TimeBudget(keras.callbacks.Callback):
    """Stops training once the training time (summed over resumed runs)
    reaches the budget; the interrupted epoch still ends with validation and
    a checkpoint."""

    def __init__(self, minutes, state):
        super().__init__()
        self.seconds = minutes * 60 if minutes else None
        self.state = state

    def on_train_batch_end(self, batch, logs=None):
        elapsed = self.state.get("train_seconds", 0.0) + (
            time.time() - self.state["_epoch_start"]
        )
        if self.seconds and elapsed >= self.seconds:
            self.model.stop_training = True


class ProgressLog(keras.callbacks.Callback):
    """One log line every `every` steps when stdout is not a terminal (the
    Keras progress bar is used on a terminal)."""

    def __init__(self, every=50):
        super().__init__()
        self.every = every
        self.start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every == 0:
            logs = logs or {}
            logger.info(
                "step %d (batch %d) loss %.4f acc %.4f  %.0f s",
                int(self.model.optimizer.iterations.numpy()),
                batch + 1,
                float(logs.get("loss", float("nan"))),
                float(logs.get("masked_accuracy", float("nan"))),
                time.time() - self.start,
            )


def average_checkpoints(model, paths):
    """Sets `model`'s weights to the mean of the weight files in `paths`."""
    total = None
    for path in paths:
        model.load_weights(path)
        weights = model.get_weights()
        total = weights if total is None else [a + b for a, b in zip(total, weights)]
    model.set_weights([w / len(paths) for w in total])
    return model


def evaluate_loss(model, dataset):
    """Validation loss; `inf` when the dataset yields no batch (a tiny split
    whose buckets are all smaller than one batch under data parallelism)."""
    if dataset is None:
        return np.inf
    logs = model.evaluate(dataset, verbose=0, return_dict=True)
    return float(logs.get("loss", np.inf))


def configure_host_devices(count):
    """Makes the CPU appear as `count` devices, to exercise `--distribute`
    without accelerators. Must run before the backend starts."""
    if count <= 1:
        return
    backend = keras.backend.backend()
    if backend == "jax":
        flag = f"--xla_force_host_platform_device_count={count}"
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = (
                os.environ.get("XLA_FLAGS", "") + " " + flag
            ).strip()
    elif backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )


def distribution_scope(config):
    """Data parallelism through the engine of the backend, or a no-op."""
    import contextlib

    if not config.distribute:
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
        logger.info("DataParallel over %d JAX devices", len(devices))
        return contextlib.nullcontext()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        strategy = tf.distribute.MirroredStrategy(devices)
        logger.info("MirroredStrategy over %d devices", strategy.num_replicas_in_sync)
        return strategy.scope()
    raise ValueError(f"--distribute is not supported on backend {backend!r}")


def accelerator():
    """The accelerator Keras computes on, e.g. "1× NVIDIA H200"; None on CPU."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        if devices[0].platform != "cpu":
            return f"{len(devices)}× {devices[0].device_kind}"
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"{len(gpus)}× {details.get('device_name', 'GPU')}"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()}× {torch.cuda.get_device_name(0)}"
    return None


def _has_batch(dataset):
    if isinstance(dataset, keras.utils.PyDataset):
        return len(dataset) > 0
    return next(iter(dataset), None) is not None


# ------------------------------------------------------------------ train
def train(config, command=None):
    """Runs training end to end; returns the metrics dict it writes."""
    configure_host_devices(config.host_devices)
    keras.utils.set_random_seed(config.seed)
    out = pathlib.Path(config.out)
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    data_dir = data_lib.resolve_data_dir(config.data_dir, dataset=config.dataset)
    train_pairs, train_stats = data_lib.load_pairs_with_stats(
        config.dataset, "train", data_dir, max_pairs=config.max_train_pairs
    )
    valid_pairs, _ = data_lib.load_pairs_with_stats(config.dataset, "valid", data_dir)
    tokenizer_path = prepare_tokenizer(config, train_pairs)
    vocabulary_size = len(
        (out / "spm.vocab.txt").read_text(encoding="utf-8").splitlines()
    )
    devices = max(config.host_devices, 1) if config.distribute else 1
    if config.distribute and not config.host_devices:
        devices = len(keras.distribution.list_devices())
    train_ds, valid_ds = make_datasets(
        config, tokenizer_path, train_pairs, valid_pairs, devices
    )

    state_path = checkpoints / "state.json"
    state = {}
    with distribution_scope(config):
        if config.resume and (checkpoints / "last.keras").exists():
            state = json.loads(state_path.read_text())
            model = keras.saving.load_model(checkpoints / "last.keras")
            logger.info("Resumed at epoch %d, step %d", state["epoch"], state["step"])
        else:
            model = compile_model(build_model(config, vocabulary_size), config)
    state["_epoch_start"] = time.time()
    state.setdefault("resumed_from_step", []).append(state.get("step", 0))
    initial_epoch = state.get("epoch", 0)
    callbacks = [
        Checkpoint(checkpoints, config.average_last, state),
        TimeBudget(config.time_budget_minutes, state),
    ]
    if importlib.util.find_spec("tensorflow"):  # Keras writes summaries with TF.
        callbacks.append(keras.callbacks.TensorBoard(out / "logs", update_freq=100))
    else:
        logger.warning("TensorFlow is not installed: no TensorBoard logs")
    if not sys.stdout.isatty():
        callbacks.append(ProgressLog())
    if not _has_batch(valid_ds):
        # A tiny split whose buckets never fill one evenly divisible batch.
        logger.warning("No validation batch; keeping checkpoints by train loss")
        valid_ds = None
    if initial_epoch < config.epochs:
        model.fit(
            train_ds,
            validation_data=valid_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )

    # Pick the final weights: the average of the last epochs, or the best.
    final = build_model(config, vocabulary_size)
    candidates = {}
    last = sorted(checkpoints.glob("epoch_*.weights.h5"))[-config.average_last :]
    if len(last) > 1:
        compile_model(average_checkpoints(final, last), config)
        candidates["average_last_%d" % len(last)] = (
            evaluate_loss(final, valid_ds),
            final.get_weights(),
        )
    final.load_weights(checkpoints / "best.weights.h5")
    compile_model(final, config)
    candidates["best_epoch_%d" % state["best_epoch"]] = (
        evaluate_loss(final, valid_ds),
        final.get_weights(),
    )
    chosen = min(candidates, key=lambda k: candidates[k][0])
    export = build_model(config, vocabulary_size)
    export.set_weights(candidates[chosen][1])
    atomic_save(export, out / "model.keras")

    metrics = {
        "dataset": config.dataset,
        "languages": list(data_lib.get_dataset_info(config.dataset).languages),
        "config": dataclasses.asdict(config),
        "command": command,
        "train_pairs": train_stats.num_pairs,
        "skipped_lines": train_stats.num_skipped,
        "valid_pairs": len(valid_pairs),
        "vocabulary_size": vocabulary_size,
        "parameters": int(export.count_params()),
        "epochs_trained": state.get("epoch", 0),
        "steps": state.get("step", 0),
        "train_seconds": round(state.get("train_seconds", 0.0), 1),
        "resumed_from_step": state.get("resumed_from_step"),
        "final_weights": chosen,
        "valid_loss": {k: round(v[0], 4) for k, v in candidates.items()},
        "history": state.get("history", []),
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "accelerator": accelerator(),
        "input_pipeline": input_pipeline(config),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    write_model_card(out)
    return metrics


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = parse_config(argv)
    command = "KERAS_BACKEND=%s python -m training.train %s" % (
        keras.backend.backend(),
        shlex.join(sys.argv[1:] if argv is None else argv),
    )
    metrics = train(config, command=command)
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=1))


if __name__ == "__main__":
    main()
