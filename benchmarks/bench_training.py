"""Training throughput of `keras_mha.Transformer` against the same model built
from keras-hub's layers.

    python -m benchmarks.bench_training          # full settings, both backends
    python -m benchmarks.bench_training --quick  # smoke test, about a minute

Both models have the shipped models' shape (by default 2 + 2 pre-LN layers,
D 256, 4 heads, feed-forward 1024, vocabulary 6000, dropout 0.1), one shared
token embedding that is also the (tied) output projection, a dropout after
the embeddings and a final layer norm after each pre-LN stack. The only
difference by design is the position embedding: ours is sinusoidal (no
weights), keras-hub's `TokenAndPositionEmbedding` learns `max_length x D`
positions (16k weights, 0.3 % of the model). Dropout sits in the same places
in both: keras-hub's layers have none on the feed-forward hidden layer, so
ours runs with `activation_dropout=0.0` here (the shipped models keep the
default, `dropout` there too).

Both are compiled with `training.train.compile_model` (Adam with warmup,
gradient clipping, `MaskedSparseCrossentropy`, masked accuracy; XLA where Keras
picks it) and trained with `train_on_batch` on the same random batches shaped
as the length buckets of `training.data.make_dataset` make them (by default
2048 tokens: 64 x 32 and 128 x 16), source and target lengths drawn between
L/2 and L, padded with 0. One timed repeat trains each model on every batch
once; the models alternate. Throughput counts real (non-padding) target
tokens. The share of the fp32 GEMM rate is the matmul FLOPs of a repeat
(`benchmarks.roofline.training_step_flops`, padded positions included, as
they are computed) per second over the compiled matmul rate measured in the
same process (`roofline.matmul_rate`).
"""

import argparse
import dataclasses
import pathlib
import sys

if __package__ in (None, ""):  # Started as a file, not with -m.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

NAME = "bench_training"
OURS, KERAS_HUB = "keras_mha", "keras-hub"
BOS_ID, EOS_ID = 2, 3  # As training.data.make_dataset; ids below 4 are special.


@dataclasses.dataclass(frozen=True)
class Settings:
    num_layers: int = 2  # Encoder layers = decoder layers.
    hidden_dim: int = 256  # D.
    num_heads: int = 4  # H.
    intermediate_dim: int = 1024  # Feed-forward size.
    vocabulary_size: int = 6000  # Joint vocabulary.
    dropout: float = 0.1
    max_length: int = 64  # Positions (keras-hub learns this many).
    batch_shapes: tuple = ((64, 32), (128, 16))  # (B, L) of the buckets.
    batches_per_shape: int = 2  # Different batches of each shape per repeat.
    warmup: int = 2  # Untimed repeats (compilation of every shape).
    repeats: int = 10  # Timed repeats per model, interleaved.


FULL = Settings()
QUICK = Settings(
    num_layers=1,
    hidden_dim=64,
    num_heads=2,
    intermediate_dim=128,
    vocabulary_size=500,
    max_length=32,
    batch_shapes=((16, 16),),
    batches_per_shape=1,
    warmup=1,
    repeats=2,
)


# ------------------------------------------------------------ worker
def train_config(settings):
    from training.train import TrainConfig

    return TrainConfig(
        dataset="spa-eng",  # The model only; nothing is read or written.
        out="runs/bench-training",
        num_layers=settings.num_layers,
        hidden_dim=settings.hidden_dim,
        intermediate_dim=settings.intermediate_dim,
        num_heads=settings.num_heads,
        dropout=settings.dropout,
        # keras-hub's layers have no dropout on the feed-forward hidden
        # layer; ours (like the shipped models) would add one by default.
        activation_dropout=0.0,
        max_length=settings.max_length,
        normalize_first=True,
    )


def build_keras_hub_model(settings):
    """The same encoder-decoder as `training.train.build_model`, from
    keras-hub layers (shared tied embedding, pre-LN, final layer norms)."""
    import keras
    import keras_hub
    from keras import ops

    layer_args = dict(
        intermediate_dim=settings.intermediate_dim,
        num_heads=settings.num_heads,
        dropout=settings.dropout,
        layer_norm_epsilon=1e-5,
        normalize_first=True,
    )
    encoder_inputs = keras.Input((None,), dtype="int32", name="encoder_inputs")
    decoder_inputs = keras.Input((None,), dtype="int32", name="decoder_inputs")
    embedding = keras_hub.layers.TokenAndPositionEmbedding(
        settings.vocabulary_size,
        settings.max_length,
        settings.hidden_dim,
        tie_weights=True,
        name="embedding",
    )
    embedding_dropout = keras.layers.Dropout(settings.dropout)
    encoder_mask = ops.not_equal(encoder_inputs, 0)  # (B, S)
    decoder_mask = ops.not_equal(decoder_inputs, 0)  # (B, T)

    x = embedding_dropout(embedding(encoder_inputs))  # (B, S, D)
    for i in range(settings.num_layers):
        layer = keras_hub.layers.TransformerEncoder(name=f"encoder_{i}", **layer_args)
        x = layer(x, padding_mask=encoder_mask)
    encoded = keras.layers.LayerNormalization(epsilon=1e-5)(x)

    y = embedding_dropout(embedding(decoder_inputs))  # (B, T, D)
    for i in range(settings.num_layers):
        layer = keras_hub.layers.TransformerDecoder(name=f"decoder_{i}", **layer_args)
        y = layer(
            y,
            encoded,
            decoder_padding_mask=decoder_mask,
            encoder_padding_mask=encoder_mask,
        )
    y = keras.layers.LayerNormalization(epsilon=1e-5)(y)
    logits = embedding.token_embedding(y, reverse=True)  # (B, T, V)
    inputs = {"encoder_inputs": encoder_inputs, "decoder_inputs": decoder_inputs}
    return keras.Model(inputs, logits, name="keras_hub_transformer")


def make_batches(settings, seed=0):
    """Random `(inputs, labels)` batches shaped like the length buckets.

    Returns:
        A list of `({"encoder_inputs": (B, L), "decoder_inputs": (B, L)},
        labels (B, L))` int32 numpy batches, and the number of real target
        tokens in them.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    batches, target_tokens = [], 0
    for batch_size, length in settings.batch_shapes:
        for _ in range(settings.batches_per_shape):
            source = np.zeros((batch_size, length), "int32")
            decoder = np.zeros((batch_size, length), "int32")
            labels = np.zeros((batch_size, length), "int32")
            for row in range(batch_size):
                s = rng.integers(length // 2, length + 1)
                t = rng.integers(length // 2, length)  # + BOS / EOS = t + 1
                target = rng.integers(4, settings.vocabulary_size, t)
                source[row, :s] = rng.integers(4, settings.vocabulary_size, s)
                decoder[row, : t + 1] = np.concatenate([[BOS_ID], target])
                labels[row, : t + 1] = np.concatenate([target, [EOS_ID]])
                target_tokens += int(t) + 1
            inputs = {"encoder_inputs": source, "decoder_inputs": decoder}
            batches.append((inputs, labels))
    return batches, target_tokens


def run_worker(settings):
    import keras

    from training import train as train_lib

    keras.utils.set_random_seed(0)
    config = train_config(settings)
    models = {
        OURS: train_lib.build_model(config, settings.vocabulary_size),
        KERAS_HUB: build_keras_hub_model(settings),
    }
    for model in models.values():
        train_lib.compile_model(model, config)
    batches, target_tokens = make_batches(settings)
    from benchmarks import roofline

    step_flops = sum(
        roofline.training_step_flops(
            models[OURS],
            inputs["encoder_inputs"].shape[0],
            inputs["encoder_inputs"].shape[1],
            inputs["decoder_inputs"].shape[1],
        )
        for inputs, _ in batches
    )
    losses = {}

    def train_round(name):
        model = models[name]
        for inputs, labels in batches:
            logs = model.train_on_batch(inputs, labels, return_dict=True)
            losses[name] = float(logs["loss"])

    seconds = harness.time_interleaved(
        {name: (lambda n=name: train_round(n)) for name in models},
        warmup=settings.warmup,
        repeats=settings.repeats,
    )
    rate = roofline.matmul_rate()
    results = {}
    for name, times in seconds.items():
        summary = harness.summarize_ms(times)
        results[name] = dict(
            parameters=models[name].count_params(),
            target_tokens_per_repeat=target_tokens,
            tokens_per_second=round(target_tokens / (summary["median_ms"] / 1000), 1),
            last_loss=round(losses[name], 4),
            # The matmuls of a repeat (ours; keras-hub's are the same up to
            # its position table) at the fp32 rate measured now.
            matmul_gflop_per_repeat=round(step_flops / 1e9, 2),
            matmul_gflop_per_second=round(rate / 1e9, 1),
            gemm_share=round(step_flops / (summary["median_ms"] / 1000) / rate, 3),
            **summary,
        )
        harness.log(
            f"[{keras.backend.backend()}] {name}: {results[name]['parameters']:,} "
            f"parameters, {results[name]['tokens_per_second']:,.0f} tokens/s"
        )
    return {"models": results}


# ------------------------------------------------------------ parent
def report(backends):
    headers = [
        "backend",
        "params ours",
        "params keras-hub",
        "params diff %",
        "ours tokens/s",
        "keras-hub tokens/s",
        "ours/keras-hub",
        "ours ms/repeat",
        "keras-hub ms/repeat",
        "ours share of fp32 GEMM rate",
        "fp32 GEMM rate, GFLOP/s",
    ]
    rows, summary = [], {}
    for backend, result in backends.items():
        if "error" in result:
            rows.append([backend, result["error"]] + ["-"] * 9)
            continue
        ours, hub = result["models"][OURS], result["models"][KERAS_HUB]
        params_diff = 100.0 * (ours["parameters"] - hub["parameters"])
        params_diff /= hub["parameters"]
        speed = ours["tokens_per_second"] / hub["tokens_per_second"]
        summary[backend] = {
            "ours_over_keras_hub": round(speed, 3),
            "parameter_difference_percent": round(params_diff, 2),
            "target_met": speed >= 1.0,
        }
        rows.append(
            [
                backend,
                f"{ours['parameters']:,}",
                f"{hub['parameters']:,}",
                f"{params_diff:+.2f}",
                f"{ours['tokens_per_second']:,.0f}",
                f"{hub['tokens_per_second']:,.0f}",
                f"{speed:.2f}",
                harness.fmt(ours["median_ms"]),
                harness.fmt(hub["median_ms"]),
                harness.fmt(ours.get("gemm_share")),
                harness.fmt(ours.get("matmul_gflop_per_second")),
            ]
        )
    table = harness.markdown_table(headers, rows)
    note = "\nTarget: ours/keras-hub >= 1.00 (higher is faster)."
    return table, table + "\n" + note, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--repeats", type=int, help="timed repeats per model")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.repeats:
        settings = dataclasses.replace(settings, repeats=args.repeats)

    if args.backend_worker:
        harness.finish_worker(args, run_worker(settings))
        return 0

    backends = harness.run_workers(__file__, args.backends)
    table, text, summary = report(backends)
    print(text)
    path = harness.write_results(
        NAME, args, dataclasses.asdict(settings), backends, table, summary
    )
    harness.log(f"results written to {path}")
    return harness.exit_code(backends)


if __name__ == "__main__":
    sys.exit(main())
