"""Train a translation Transformer from a recipe in training/recipes/.

    python -m training.train --recipe en-es --out runs/en-es

Every shipped model has a recipe in `training/recipes/` (one TOML file,
named like the model's folder); `--recipe NAME` picks one, and without it
`--dataset` picks the recipe that trains on that dataset. Flags override the
recipe's values. Runs on every Keras backend (`KERAS_BACKEND=jax|tensorflow`);
checkpoints every epoch (atomically) and continues with `--resume` after a
crash.

A run never writes into a folder that holds anything unless told to:
`--resume` continues the run in it, `--overwrite` deletes what an earlier run
wrote there and starts over.

Output folder:
    model.keras        the final model (no optimizer state), loadable anywhere
    spm.model          SentencePiece tokenizer (+ spm.vocab.txt, plain text)
    metrics.json       training and evaluation figures
    model_card.md      how the model was made and how good it is
    checkpoints/       last_NNN.keras (with optimizer), epoch weights, state.json
    logs/              TensorBoard logs
"""

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import pathlib
import platform
import shlex
import shutil
import sys
import time

import keras
import numpy as np
import sentencepiece

from keras_mha.transformer import Transformer
from training import data as data_lib
from training import recipes as recipes_lib
from training import tokenizers as tokenizers_lib
from training.model_card import write_model_card
from training.objectives import (
    MaskedAccuracy,
    MaskedSparseCrossentropy,
    WarmupInverseSqrt,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on: a recipe, overridden by flags."""

    dataset: str  # A key of training.data.DATASETS; its splits without `mix`.
    out: str  # Output folder; must be empty unless `resume` or `overwrite`.
    recipe: str | None = None  # The recipe the values came from.
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
    # The Keras dtype policy of training: "float32", or "mixed_bfloat16"
    # (float32 weights, bfloat16 matmuls; fast where the CPU has AMX or
    # AVX512-BF16). The saved model computes in float32 either way.
    dtype_policy: str = "float32"
    seed: int = 0  # Seeds Keras, NumPy, shuffling and the tokenizer.
    average_last: int = 3  # Average the weights of the last k epochs (1: off).
    # Training corpora and their weights, a list of training.data.MixPart
    # tables (`[[config.mix]]` in a recipe, JSON on the command line); None:
    # `dataset` alone. Validation then uses the valid split of every corpus.
    mix: list | None = None
    max_train_pairs: int | None = None  # Cap on training pairs of each corpus.
    time_budget_minutes: float | None = None  # Stop after this much training.
    resume: bool = False  # Continue the run in `out` from its last checkpoint.
    overwrite: bool = False  # Delete what a run wrote in `out`, start over.
    distribute: bool = False  # Data parallel over all local devices.
    host_devices: int = 0  # >1: split the CPU into this many devices (tests).
    # "tf" (tf.data, tokenizing in the graph), "numpy" (keras.utils.PyDataset,
    # for machines without TensorFlow) or "auto" (tf where it is installed).
    input_pipeline: str = "auto"

    def __post_init__(self):
        if self.dtype_policy not in DTYPE_POLICIES:
            raise ValueError(
                f"dtype_policy={self.dtype_policy!r}: one of {DTYPE_POLICIES}."
            )


DTYPE_POLICIES = ("float32", "mixed_bfloat16")


# Settings that must not change when a run is resumed: the model's shape, its
# tokenizer and its data.
RESUME_MUST_MATCH = (
    "dataset",
    "mix",
    "vocabulary_size",
    "num_layers",
    "hidden_dim",
    "intermediate_dim",
    "num_heads",
    "normalize_first",
    "max_length",
    "seed",
)
# What a training run writes into its output folder; `--overwrite` deletes
# these and nothing else.
RUN_OUTPUTS = (
    "model.keras",
    "spm.model",
    "spm.vocab.txt",
    "metrics.json",
    "model_card.md",
    "checkpoints",
    "logs",
)


class OutputFolderError(ValueError):
    """The output folder cannot be used as asked (see `prepare_output`)."""


def build_parser():
    """The command line: one flag per `TrainConfig` field, plus `--recipe`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        annotation = str(field.type)
        if field.type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction)
        elif "int" in annotation:
            parser.add_argument(flag, type=int)
        elif "float" in annotation:
            parser.add_argument(flag, type=float)
        elif field.name == "mix":
            parser.add_argument(
                flag,
                type=json.loads,
                help='training corpora as JSON, e.g. \'[{"dataset": "deu-eng"}, '
                '{"dataset": "multi30k-en-de", "repeat": 2}]\'',
            )
        elif field.name == "recipe":
            parser.add_argument(
                flag,
                help="a recipe in training/recipes/ (e.g. en-es) or a .toml "
                "file; default: the recipe of --dataset",
            )
        else:
            parser.add_argument(flag, type=str, required=field.name == "out")
    return parser


def select_recipe(recipe=None, dataset=None):
    """The recipe named `recipe`, else the one that trains on `dataset`."""
    if recipe is not None:
        return recipes_lib.load_recipe(recipe)
    if dataset is None:
        raise ValueError(
            "Choose what to train with `--recipe NAME` (one of "
            f"{', '.join(recipes_lib.names())}) or `--dataset NAME`."
        )
    data_lib.get_dataset_info(dataset)  # A clear error for unknown datasets.
    return recipes_lib.recipe_for_dataset(dataset)


def config_from_recipe(recipe, **overrides):
    """A `TrainConfig` of the recipe's values with `overrides` on top."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = set(recipe.config) - set(fields)
    if unknown:
        raise ValueError(
            f"Recipe {recipe.name!r} sets unknown settings {sorted(unknown)}; "
            f"TrainConfig has {sorted(fields)}."
        )
    values = {"recipe": recipe.name, **recipe.config, **overrides}
    if values.get("mix") is not None:
        parts = data_lib.parse_mix(values["mix"])  # Clear errors for bad entries.
        languages = data_lib.get_dataset_info(values["dataset"]).languages
        if any(
            data_lib.get_dataset_info(p.dataset).languages != languages for p in parts
        ):
            raise ValueError(
                f"The `mix` of recipe {recipe.name!r} holds corpora of other "
                f"languages than its dataset {values['dataset']!r} {languages}."
            )
        values["mix"] = [dataclasses.asdict(part) for part in parts]
    for name, value in values.items():
        # TOML writes 110 for 110.0; the config keeps float fields floats.
        if "float" in str(fields[name].type) and isinstance(value, int):
            values[name] = float(value)
    return TrainConfig(**values)


def parse_config(argv=None):
    """Builds a `TrainConfig` from a recipe and the command-line flags."""
    parser = build_parser()
    args = parser.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if v is not None}
    try:
        recipe = select_recipe(flags.pop("recipe", None), args.dataset)
    except ValueError as error:
        parser.error(str(error))
    return config_from_recipe(recipe, **flags)


# ---------------------------------------------------------------- pieces
def prepare_output(config):
    """Checks the output folder against `resume`/`overwrite`; returns it.

    An empty or missing folder is used as it is. A folder holding anything is
    refused unless `resume` (continue the run in it) or `overwrite` (delete
    what a run wrote there, `RUN_OUTPUTS`, and start over; a folder holding
    anything else is refused even then).

    Raises:
        OutputFolderError: when the folder cannot be used as asked.
    """
    out = pathlib.Path(config.out)
    if config.resume and config.overwrite:
        raise OutputFolderError(
            "`--resume` continues the run in the output folder and "
            "`--overwrite` deletes it: choose one."
        )
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"The output {out} exists and is not a folder.")
    contents = sorted(out.iterdir()) if out.is_dir() else []
    if contents and not (config.resume or config.overwrite):
        raise OutputFolderError(
            f"The output folder {out} is not empty (it holds "
            f"{', '.join(p.name for p in contents[:5])}"
            f"{', ...' if len(contents) > 5 else ''}). Pass `--resume` to "
            "continue the run in it, `--overwrite` to delete what it holds and "
            "start over, or choose another `--out`."
        )
    if contents and config.overwrite:
        foreign = [p.name for p in contents if p.name not in RUN_OUTPUTS]
        if foreign:
            raise OutputFolderError(
                f"`--overwrite` refuses to empty {out}: it holds files a "
                f"training run does not write ({', '.join(foreign)})."
            )
        for path in contents:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        logger.info("Deleted the earlier run in %s", out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    return out


def load_state(config, checkpoints):
    """The saved training state when resuming from a checkpoint, else `{}`.

    Raises:
        OutputFolderError: when the checkpoint was made with settings that
            `RESUME_MUST_MATCH` says cannot change.
    """
    state_path = checkpoints / "state.json"
    if not (config.resume and state_path.exists()):
        return {}
    state = json.loads(state_path.read_text(encoding="utf-8"))
    if not last_checkpoint(checkpoints, state).exists():
        return {}
    saved = state.get("config", {})
    changed = {
        name: (saved[name], getattr(config, name))
        for name in RESUME_MUST_MATCH
        if name in saved and saved[name] != getattr(config, name)
    }
    if changed:
        raise OutputFolderError(
            f"Cannot resume the run in {config.out} with other settings: "
            + ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in changed.items())
            + ". Use `--overwrite` to start over, or another `--out`."
        )
    # A state written before runs recorded their epoch files.
    state.setdefault(
        "epoch_checkpoints", [p.name for p in epoch_checkpoints(checkpoints, state)]
    )
    return state


def prepare_tokenizer(config, train_pairs):
    """Trains the joint tokenizer, or checks the one a resumed run made.

    Raises:
        OutputFolderError: when an existing `spm.model` has another
            vocabulary size than `config.vocabulary_size`.
    """
    out = pathlib.Path(config.out)
    model_path = out / "spm.model"
    if model_path.exists():
        size = sentencepiece.SentencePieceProcessor(
            model_file=str(model_path)
        ).get_piece_size()
        if size != config.vocabulary_size:
            raise OutputFolderError(
                f"{model_path} has a vocabulary of {size} pieces, but the run "
                f"asks for vocabulary_size={config.vocabulary_size}. Pass "
                f"`--vocabulary-size {size}` to continue with it, or "
                "`--overwrite` to start over."
            )
        return model_path
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


def build_model(config, vocabulary_size, dtype="float32"):
    """The Transformer of `config` with a shared, tied joint vocabulary,
    computing in the Keras dtype policy `dtype`."""
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
        dtype=dtype,
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
        metrics=[MaskedAccuracy()],
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


def last_checkpoint(checkpoints, state):
    """The full checkpoint (model + optimizer) that `state` describes."""
    return pathlib.Path(checkpoints) / state.get("last_checkpoint", "last.keras")


class Checkpoint(keras.callbacks.Callback):
    """Every epoch: the model with its optimizer (`last_{epoch}.keras`), the
    epoch's weights for averaging, the best weights by validation loss and,
    last, `state.json`, which names the full checkpoint it belongs to.

    The state is written last and the older full checkpoint removed after
    it, so a crash at any point leaves a state and a checkpoint of the same
    epoch: a resumed run never trains an epoch twice.
    `state["epoch_checkpoints"]` lists the epoch weight files this run wrote
    (the newest `average_last` are kept), so that only they are averaged.
    """

    def __init__(self, directory, average_last, state):
        super().__init__()
        self.directory = pathlib.Path(directory)
        self.average_last = average_last
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        d = self.directory
        name = f"epoch_{epoch + 1:03d}.weights.h5"
        atomic_save(self.model, d / name)
        kept = self.state.setdefault("epoch_checkpoints", [])
        kept.append(name)
        removed = []
        while len(kept) > max(self.average_last, 1):
            removed.append(kept.pop(0))
        val_loss = float(logs.get("val_loss", logs.get("loss", np.inf)))
        history = self.state.setdefault("history", [])
        history.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        if val_loss < self.state.get("best_val_loss", np.inf):
            self.state.update(best_val_loss=val_loss, best_epoch=epoch + 1)
            atomic_save(self.model, d / "best.weights.h5")
        full = f"last_{epoch + 1:03d}.keras"
        atomic_save(self.model, d / full)
        self.state.update(
            epoch=epoch + 1,
            step=int(self.model.optimizer.iterations.numpy()),
            last_checkpoint=full,
            train_seconds=self.state.get("train_seconds", 0.0)
            + time.time()
            - self.state["_epoch_start"],
        )
        self.state["_epoch_start"] = time.time()
        atomic_write_text(
            d / "state.json",
            json.dumps({k: v for k, v in self.state.items() if k[0] != "_"}, indent=1),
        )
        for old in [*d.glob("last_*.keras"), d / "last.keras"]:
            if old.name != full:
                old.unlink(missing_ok=True)
        for old in removed:
            (d / old).unlink(missing_ok=True)


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


def epoch_checkpoints(checkpoints, state):
    """This run's epoch weight files, oldest first.

    From `state["epoch_checkpoints"]`; a state written without that list
    counts the `epoch_*` files of its own epochs only.
    """
    if "epoch_checkpoints" in state:
        names = state["epoch_checkpoints"]
    else:
        names = [
            path.name
            for path in sorted(checkpoints.glob("epoch_*.weights.h5"))
            if int(path.name[6:9]) <= state.get("epoch", 0)
        ]
    return [checkpoints / name for name in names if (checkpoints / name).exists()]


def select_final_weights(config, vocabulary_size, checkpoints, state, valid_ds):
    """The weights with the lowest validation loss among the average of this
    run's last `average_last` epochs and its best epoch.

    A candidate whose loss is NaN never wins; when no epoch had a finite
    validation loss (no best epoch), the last epoch's weights are a
    candidate, so that a diverged run still ends with a model and says so
    in its losses.

    Returns:
        `(name, weights, valid_losses)`: the chosen candidate's name (e.g.
        `"average_last_3"`), its weights and every candidate's loss.
    """
    model = build_model(config, vocabulary_size)
    # Compiled once: every candidate's loss comes from the same compiled
    # evaluation (weights are replaced, not the program).
    compile_model(model, config)
    candidates = {}
    last = epoch_checkpoints(checkpoints, state)[-config.average_last :]
    if len(last) > 1:
        average_checkpoints(model, last)
        candidates[f"average_last_{len(last)}"] = (
            evaluate_loss(model, valid_ds),
            model.get_weights(),
        )
    if "best_epoch" in state:
        model.load_weights(checkpoints / "best.weights.h5")
        name = f"best_epoch_{state['best_epoch']}"
    else:
        logger.warning("No epoch had a finite validation loss")
        model.load_weights(epoch_checkpoints(checkpoints, state)[-1])
        name = f"last_epoch_{state.get('epoch', 0)}"
    candidates[name] = (evaluate_loss(model, valid_ds), model.get_weights())
    chosen = min(
        candidates,
        key=lambda k: np.inf if np.isnan(candidates[k][0]) else candidates[k][0],
    )
    losses = {k: round(v[0], 4) for k, v in candidates.items()}
    return chosen, candidates[chosen][1], losses


def training_callbacks(config, out, state):
    callbacks = [
        Checkpoint(out / "checkpoints", config.average_last, state),
        TimeBudget(config.time_budget_minutes, state),
    ]
    if importlib.util.find_spec("tensorflow"):  # Keras writes summaries with TF.
        callbacks.append(keras.callbacks.TensorBoard(out / "logs", update_freq=100))
    else:
        logger.warning("TensorFlow is not installed: no TensorBoard logs")
    if not sys.stdout.isatty():
        callbacks.append(ProgressLog())
    return callbacks


def num_devices(config):
    """Devices a batch is split over: 1 without `--distribute`."""
    if not config.distribute:
        return 1
    if config.host_devices:
        return max(config.host_devices, 1)
    return len(keras.distribution.list_devices())


def run_metrics(config, command, data, state, export, chosen, valid_losses):
    """The `metrics.json` of a finished run (evaluation is added later)."""
    info = data_lib.get_dataset_info(config.dataset)
    recipe = recipes_lib.load_recipe(config.recipe) if config.recipe else None
    corpora = [part["dataset"] for part in config.mix or [{"dataset": config.dataset}]]
    domains = dict.fromkeys(data_lib.get_dataset_info(d).domain for d in corpora)
    return {
        "dataset": config.dataset,
        "languages": list(info.languages),
        "domain": " and ".join(domains),
        "examples": list(recipe.examples) if recipe else [],
        "config": dataclasses.asdict(config),
        "command": command,
        "train_pairs": data["train_stats"].num_pairs,
        "train_mix": data.get("mix_stats"),
        "skipped_lines": data["train_stats"].num_skipped,
        "valid_pairs": len(data["valid_pairs"]),
        "vocabulary_size": config.vocabulary_size,
        "parameters": int(export.count_params()),
        "epochs_trained": state.get("epoch", 0),
        "steps": state.get("step", 0),
        "train_seconds": round(state.get("train_seconds", 0.0), 1),
        "resumed_from_step": state.get("resumed_from_step"),
        "final_weights": chosen,
        "valid_loss": valid_losses,
        "history": state.get("history", []),
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "accelerator": accelerator(),
        "input_pipeline": input_pipeline(config),
    }


def load_data(config):
    """The training and validation pairs of `config.mix`, else of
    `config.dataset`."""
    data_dir = data_lib.resolve_data_dir(config.data_dir, dataset=config.dataset)
    if config.mix:
        train_pairs, mix_stats = data_lib.load_mix(
            config.mix, "train", data_dir, max_pairs=config.max_train_pairs
        )
        valid_pairs, _ = data_lib.load_mix(config.mix, "valid", data_dir)
        skipped = sum(part["skipped"] for part in mix_stats.values())
        stats = data_lib.LoadStats(len(train_pairs), skipped, ())
        return {
            "train_pairs": train_pairs,
            "train_stats": stats,
            "valid_pairs": valid_pairs,
            "mix_stats": mix_stats,
        }
    train_pairs, train_stats = data_lib.load_pairs_with_stats(
        config.dataset, "train", data_dir, max_pairs=config.max_train_pairs
    )
    valid_pairs, _ = data_lib.load_pairs_with_stats(config.dataset, "valid", data_dir)
    return {
        "train_pairs": train_pairs,
        "train_stats": train_stats,
        "valid_pairs": valid_pairs,
    }


# ------------------------------------------------------------------ train
def train(config, command=None):
    """Runs training end to end; returns the metrics dict it writes."""
    out = prepare_output(config)
    checkpoints = out / "checkpoints"
    state = load_state(config, checkpoints)
    configure_host_devices(config.host_devices)
    keras.utils.set_random_seed(config.seed)
    data = load_data(config)
    tokenizer_path = prepare_tokenizer(config, data["train_pairs"])
    train_ds, valid_ds = make_datasets(
        config,
        tokenizer_path,
        data["train_pairs"],
        data["valid_pairs"],
        num_devices(config),
    )
    if not _has_batch(valid_ds):
        # A tiny split whose buckets never fill one evenly divisible batch.
        logger.warning("No validation batch; keeping checkpoints by train loss")
        valid_ds = None

    with distribution_scope(config):
        if state:
            model = keras.saving.load_model(last_checkpoint(checkpoints, state))
            logger.info("Resumed at epoch %d, step %d", state["epoch"], state["step"])
        else:
            model = build_model(config, config.vocabulary_size, config.dtype_policy)
            model = compile_model(model, config)
    state["config"] = dataclasses.asdict(config)
    state["_epoch_start"] = time.time()
    state.setdefault("resumed_from_step", []).append(state.get("step", 0))
    initial_epoch = state.get("epoch", 0)
    if initial_epoch < config.epochs:
        model.fit(
            train_ds,
            validation_data=valid_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            callbacks=training_callbacks(config, out, state),
            verbose=1 if sys.stdout.isatty() else 2,
        )

    chosen, weights, valid_losses = select_final_weights(
        config, config.vocabulary_size, checkpoints, state, valid_ds
    )
    export = build_model(config, config.vocabulary_size)
    export.set_weights(weights)
    atomic_save(export, out / "model.keras")
    metrics = run_metrics(config, command, data, state, export, chosen, valid_losses)
    atomic_write_text(
        out / "metrics.json", json.dumps(metrics, indent=1, ensure_ascii=False) + "\n"
    )
    write_model_card(out)
    return metrics


def command_line(argv=None):
    """The command that started this run, as it would be typed."""
    argv = sys.argv[1:] if argv is None else argv
    return "KERAS_BACKEND=%s python -m training.train %s" % (
        keras.backend.backend(),
        shlex.join(argv),
    )


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = parse_config(argv)
    try:
        metrics = train(config, command=command_line(argv))
    except OutputFolderError as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=1))


if __name__ == "__main__":
    main()
