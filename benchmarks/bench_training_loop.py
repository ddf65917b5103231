"""Throughput of the real training loop of a recipe, per backend and input
pipeline.

    python -m benchmarks.bench_training_loop                  # en-fr, 60 steps
    python -m benchmarks.bench_training_loop --recipe en-de --steps 100
    python -m benchmarks.bench_training_loop --quick          # smoke test

`benchmarks/bench_training.py` times `train_on_batch` on random batches of
a fixed shape; this one times what `python -m training.train --recipe NAME`
runs: the recipe's model (`training.train.build_model`, compiled by
`compile_model`), its training corpora (`load_data`, the `mix` included),
tokenized and length-bucketed by `make_datasets` with the chosen input
pipeline (`tf`: tf.data with the TensorFlow SentencePiece op; `numpy`: a
Keras `PyDataset` of NumPy batches), and `model.fit` with the run's own
per-batch callbacks (the time budget and the progress log). The tokenizer is
the shipped model's (`saved_models/<recipe>/spm.model`; `--tokenizer` for
another), so nothing is trained before the loop.

A pipeline named with `+xla` (e.g. `tf+xla`) compiles the training step
with XLA (`model.jit_compile = True`): Keras does so by default on JAX, and
not for TensorFlow on a CPU, where this shows what XLA would give. One
named with `+bf16` (e.g. `tf+bf16`) trains under the `mixed_bfloat16`
policy (`dtype_policy` of a recipe) whatever the recipe says, and a plain
name under the recipe's own policy.

`--warmup` updates are left out (they compile the step for every bucket
shape they meet); an update later that still compiles (a bucket shape first
seen there, slower than 5x the median update) is left out too and counted.
Tokens per second are the real (non-padding) target tokens of an average
batch, counted on as many batches again drawn from the same pipeline, over
the mean seconds per update. The GEMM share is the matmul FLOPs of an
average batch (`roofline.training_step_flops`, padded positions included)
per second over the fp32 matmul rate measured in the same process, and
over the bfloat16 rate (where the CPU has AMX, several times the fp32 one).
"""

import argparse
import dataclasses
import pathlib
import sys
import tempfile
import time

if __package__ in (None, ""):  # Started as a file, not with -m.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

NAME = "bench_training_loop"
COMPILE_FACTOR = 5.0  # An update this much slower than the median compiled.


@dataclasses.dataclass(frozen=True)
class Settings:
    recipe: str = "en-fr"
    tokenizer: str | None = None  # Default: saved_models/<recipe>/spm.model.
    data_dir: str | None = None  # Default: training.data.resolve_data_dir.
    pipelines: tuple = ("numpy", "tf")  # NumPy first: no TensorFlow loaded yet.
    warmup: int = 40  # Untimed updates (compilation of the common shapes).
    steps: int = 60  # Timed updates.
    max_train_pairs: int | None = None  # Cap per corpus (smaller startup).
    overrides: tuple = ()  # (field, value) pairs on top of the recipe.


QUICK = dict(warmup=3, steps=4, max_train_pairs=400)


def step_timer():
    """A Keras callback whose `times` are `perf_counter()` at the start of
    `fit` and at the end of every update."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    return StepTimer()


def recipe_config(settings, out, pipeline):
    from training import train as train_lib

    recipe = train_lib.select_recipe(settings.recipe)
    return train_lib.config_from_recipe(
        recipe,
        out=str(out),
        data_dir=settings.data_dir,
        input_pipeline=pipeline,
        max_train_pairs=settings.max_train_pairs,
        **dict(settings.overrides),
    )


def fit_input(dataset, updates):
    """What `fit` gets for `updates` updates, and how many it can give: a
    tf.data pipeline repeated, a `PyDataset` as it is (one epoch at most)."""
    if hasattr(dataset, "repeat"):
        return dataset.repeat(), updates
    return dataset, min(updates, len(dataset))


def average_batch(dataset, count, model):
    """Mean real target tokens and matmul FLOPs of `count` batches."""
    import numpy as np

    from benchmarks import roofline

    if hasattr(dataset, "repeat"):
        items = iter(dataset.repeat())
    else:
        items = (dataset[i % len(dataset)] for i in range(count))
    tokens = flops = 0
    for _ in range(count):
        inputs, labels = next(items)
        labels = np.asarray(labels)
        source = np.asarray(inputs["encoder_inputs"])
        tokens += int(np.count_nonzero(labels))
        flops += roofline.training_step_flops(
            model, source.shape[0], source.shape[1], labels.shape[1]
        )
    return tokens / count, flops / count


def run_pipeline(settings, variant, data):
    import keras
    import numpy as np

    from benchmarks import roofline
    from training import train as train_lib

    keras.utils.set_random_seed(0)
    pipeline, *options = variant.split("+")
    if set(options) - {"xla", "bf16"}:
        raise ValueError(f"Unknown pipeline {variant!r}: expected NAME[+xla][+bf16]")
    with tempfile.TemporaryDirectory() as out:
        config = recipe_config(settings, out, pipeline)
        if "bf16" in options:
            config = dataclasses.replace(config, dtype_policy="mixed_bfloat16")
        tokenizer = pathlib.Path(
            settings.tokenizer or f"saved_models/{settings.recipe}/spm.model"
        )
        train_ds, _ = train_lib.make_datasets(
            config, tokenizer, data["train_pairs"], data["valid_pairs"][:64]
        )
        model = train_lib.compile_model(
            train_lib.build_model(config, config.vocabulary_size, config.dtype_policy),
            config,
        )
        if "xla" in options:
            model.jit_compile = True
        state = {"_epoch_start": time.time()}
        timer = step_timer()
        callbacks = [
            train_lib.TimeBudget(None, state),
            train_lib.ProgressLog(every=10_000),
            timer,
        ]
        inputs, total = fit_input(train_ds, settings.warmup + settings.steps)
        start = time.perf_counter()
        model.fit(
            inputs,
            steps_per_epoch=total,
            epochs=1,
            callbacks=callbacks,
            verbose=0,
        )
        wall = time.perf_counter() - start
        seconds = np.diff(timer.times)[settings.warmup :]
        compiled = seconds > COMPILE_FACTOR * np.median(seconds)
        kept = seconds[~compiled]
        counted = max(settings.steps, 1)
        tokens, flops = average_batch(train_ds, counted, model)
    rate = roofline.matmul_rate()
    bf16_rate = roofline.matmul_rate(dtype="bfloat16")
    per_update = float(np.mean(kept))
    result = dict(
        updates_timed=int(kept.size),
        updates_left_out_compiling=int(compiled.sum()),
        seconds_per_update=round(per_update, 4),
        median_seconds_per_update=round(float(np.median(kept)), 4),
        target_tokens_per_batch=round(tokens, 1),
        batches_counted=counted,
        tokens_per_second=round(tokens / per_update, 1),
        matmul_gflop_per_update=round(flops / 1e9, 2),
        matmul_gflop_per_second=round(rate / 1e9, 1),
        gemm_share=round(flops / per_update / rate, 3),
        bf16_matmul_gflop_per_second=round(bf16_rate / 1e9, 1),
        bf16_gemm_share=round(flops / per_update / bf16_rate, 3),
        dtype_policy=config.dtype_policy,
        fit_wall_seconds=round(wall, 1),
        parameters=model.count_params(),
        jit_compile=bool(model.jit_compile),
    )
    harness.log(
        f"[{keras.backend.backend()} / {variant}] {per_update:.3f} s/update, "
        f"{result['tokens_per_second']:,.0f} tokens/s, "
        f"GEMM share {result['gemm_share']:.2f}"
    )
    return result


def run_worker(settings):
    from training import train as train_lib

    with tempfile.TemporaryDirectory() as out:
        data = train_lib.load_data(recipe_config(settings, out, "numpy"))
    return {
        "pipelines": {
            pipeline: run_pipeline(settings, pipeline, data)
            for pipeline in settings.pipelines
        }
    }


# ------------------------------------------------------------ parent
def report(backends, settings):
    headers = [
        "backend",
        "input pipeline",
        "s/update",
        "target tokens/s",
        "share of fp32 GEMM rate",
        "fp32 GEMM rate, GFLOP/s",
        "share of bf16 GEMM rate",
        "bf16 GEMM rate, GFLOP/s",
        "updates timed (left out: compiling)",
    ]
    rows, speeds = [], {}
    for backend, result in backends.items():
        if "error" in result:
            rows.append([backend, result["error"]] + ["-"] * 7)
            continue
        for pipeline, r in result["pipelines"].items():
            speeds[f"{backend}/{pipeline}"] = r["tokens_per_second"]
            rows.append(
                [
                    backend,
                    pipeline,
                    harness.fmt(r["seconds_per_update"], 3),
                    f"{r['tokens_per_second']:,.0f}",
                    harness.fmt(r["gemm_share"], 2),
                    harness.fmt(r["matmul_gflop_per_second"]),
                    harness.fmt(r["bf16_gemm_share"], 2),
                    harness.fmt(r["bf16_matmul_gflop_per_second"]),
                    f"{r['updates_timed']} ({r['updates_left_out_compiling']})",
                ]
            )
    fastest = max(speeds, key=speeds.get, default=None)
    # Per backend: its pipelines' tokens/s over the fastest row of the run.
    summary = {}
    for key, speed in speeds.items():
        backend, pipeline = key.split("/", 1)
        facts = summary.setdefault(backend, {"fastest_of_the_run": fastest})
        facts[f"{pipeline} over the fastest"] = round(speed / speeds[fastest], 3)
    table = harness.markdown_table(headers, rows)
    note = f"\nRecipe {settings.recipe}; fastest: {fastest}."
    return table, table + "\n" + note, summary


def parse_override(text):
    field, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return field.replace("-", "_"), cast(value)
        except ValueError:
            pass
    return field.replace("-", "_"), value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--recipe", default=Settings.recipe)
    parser.add_argument("--tokenizer", help="spm.model of the recipe's vocabulary")
    parser.add_argument("--data-dir", help="corpus folder (default: ../shared/data)")
    parser.add_argument(
        "--pipelines",
        default=",".join(Settings.pipelines),
        type=lambda text: tuple(p.strip() for p in text.split(",") if p.strip()),
    )
    parser.add_argument("--warmup", type=int, default=Settings.warmup)
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=parse_override,
        metavar="FIELD=VALUE",
        help="a training setting on top of the recipe, e.g. num_layers=4",
    )
    args = parser.parse_args(argv)
    settings = Settings(
        recipe=args.recipe,
        tokenizer=args.tokenizer,
        data_dir=args.data_dir,
        pipelines=args.pipelines,
        warmup=args.warmup,
        steps=args.steps,
        overrides=tuple(args.set),
    )
    if args.quick:
        settings = dataclasses.replace(settings, **QUICK)

    if args.backend_worker:
        harness.finish_worker(args, run_worker(settings))
        return 0

    backends = harness.run_workers(__file__, args.backends)
    table, text, summary = report(backends, settings)
    print(text)
    path = harness.write_results(
        NAME, args, dataclasses.asdict(settings), backends, table, summary
    )
    harness.log(f"results written to {path}")
    return harness.exit_code(backends)


if __name__ == "__main__":
    sys.exit(main())
