"""Forward + backward time of `keras_mha.MultiHeadAttention` against
`keras.layers.MultiHeadAttention`, and of our fused and explicit paths.

    python -m benchmarks.bench_attention          # full settings, both backends
    python -m benchmarks.bench_attention --quick  # smoke test, about a minute

Both layers get the same weights, the same input and the same compiled step:
`jax.jit(jax.value_and_grad(...))` over `stateless_call` on JAX, and
`tf.function(jit_compile=True)` around a `GradientTape` on TensorFlow (Keras
also compiles training steps with XLA there). The gradient is taken with
respect to the weights *and* the input, as inside a deeper model, of the loss
`mean(y ** 2)`. Self-attention, without a mask and with a causal mask.

Our layer is timed twice, with `keras_mha.backend_config.FUSED_ATTENTION`
forced to every backend (`ops.dot_product_attention`) and to none (einsum +
softmax), so that the switch can be set from the measurements; "ours" is the
path that the switch currently selects.

Shape legend: B batch, T length, D model dim, H heads, K key dim.
"""

import argparse
import contextlib
import dataclasses
import math
import pathlib
import sys

if __package__ in (None, ""):  # Started as a file, not with -m.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

NAME = "bench_attention"
MASKS = ("none", "causal")
# Variants: Keras' layer, and ours with the fused path off and on.
KERAS, EXPLICIT, FUSED = "keras", "ours-explicit", "ours-fused"


@dataclasses.dataclass(frozen=True)
class Settings:
    batch_size: int = 64  # B.
    lengths: tuple = (32, 128)  # T (self-attention: S = T).
    hidden_dim: int = 256  # D.
    num_heads: int = 8  # H; K = D / H = 32.
    warmup: int = 3  # Untimed steps per variant (the first compiles).
    repeats: int = 20  # Timed steps per variant, interleaved.


FULL = Settings()
QUICK = Settings(batch_size=8, lengths=(16,), hidden_dim=64, num_heads=4, repeats=5)


# ------------------------------------------------------------ worker
@contextlib.contextmanager
def fused_attention(enabled):
    """Forces our layer's fused path on (True) or off (False) while tracing.

    `None` leaves the library's constant as it is.
    """
    import keras

    from keras_mha import backend_config

    saved = backend_config.FUSED_ATTENTION
    if enabled is not None:
        backend_config.FUSED_ATTENTION = (keras.backend.backend(),) if enabled else ()
    try:
        yield
    finally:
        backend_config.FUSED_ATTENTION = saved


def compile_step(layer, causal, fused):
    """A compiled `x -> (loss, gradients)` step that blocks until done.

    The switch of the fused path is read while tracing, so `fused` is set
    inside the traced function and each variant compiles its own program.
    """
    import keras

    if keras.backend.backend() == "jax":
        import jax
        import jax.numpy as jnp

        non_trainable = [v.value for v in layer.non_trainable_variables]
        trainable = [v.value for v in layer.trainable_variables]

        def loss_fn(trainable, x):
            with fused_attention(fused):
                y, _ = layer.stateless_call(
                    trainable,
                    non_trainable,
                    x,
                    x,
                    use_causal_mask=causal,
                    training=True,
                )
            return jnp.mean(jnp.square(y))

        grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))
        return lambda x: jax.block_until_ready(grad_fn(trainable, x))

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def grad_fn(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                with fused_attention(fused):
                    y = layer(x, x, use_causal_mask=causal, training=True)
                loss = tf.reduce_mean(tf.square(y))
            return loss, tape.gradient(loss, [x, *layer.trainable_variables])

        # TensorFlow runs eagerly-called functions synchronously: once the
        # loss is on the host, the gradients are done too.
        return lambda x: grad_fn(x)[0].numpy()

    raise ValueError(f"Unsupported backend: {keras.backend.backend()}")


def build_layers(settings, x):
    """Keras' layer and ours, built on `x`, with the same weights."""
    import keras

    import keras_mha

    key_dim = settings.hidden_dim // settings.num_heads
    theirs = keras.layers.MultiHeadAttention(settings.num_heads, key_dim)
    ours = keras_mha.MultiHeadAttention(settings.num_heads, key_dim)
    theirs(x, x)
    ours(x, x)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def max_difference(theirs, ours, x, causal):
    """Largest `|ours - keras|` of the outputs, for both of our paths."""
    from keras import ops

    expected = theirs(x, x, use_causal_mask=causal)
    worst = 0.0
    for enabled in (False, True):
        with fused_attention(enabled):
            got = ours(x, x, use_causal_mask=causal)
        worst = max(worst, float(ops.max(ops.abs(got - expected))))
    return worst


def run_worker(settings):
    import keras
    import numpy as np

    from keras_mha import backend_config

    keras.utils.set_random_seed(0)
    backend = keras.backend.backend()
    default_fused = backend_config.uses(backend_config.FUSED_ATTENTION)
    rows = []
    for length in settings.lengths:
        shape = (settings.batch_size, length, settings.hidden_dim)  # (B, T, D)
        x = keras.ops.convert_to_tensor(
            np.random.default_rng(0).standard_normal(shape).astype("float32")
        )
        theirs, ours = build_layers(settings, x)
        for mask in MASKS:
            causal = mask == "causal"
            difference = max_difference(theirs, ours, x, causal)
            steps = {
                KERAS: compile_step(theirs, causal, fused=None),
                EXPLICIT: compile_step(ours, causal, fused=False),
                FUSED: compile_step(ours, causal, fused=True),
            }
            seconds = harness.time_interleaved(
                {name: (lambda s=step: s(x)) for name, step in steps.items()},
                warmup=settings.warmup,
                repeats=settings.repeats,
            )
            for variant, times in seconds.items():
                rows.append(
                    dict(
                        length=length,
                        mask=mask,
                        variant=variant,
                        max_abs_difference=difference,
                        **harness.summarize_ms(times),
                    )
                )
            timings = ", ".join(
                f"{r['variant']} {r['median_ms']:.2f} ms" for r in rows[-3:]
            )
            harness.log(
                f"[{backend}] T={length} mask={mask}: {timings} "
                f"(max |ours - keras| {difference:.1e})"
            )
    return {"default_fused": default_fused, "rows": rows}


# ------------------------------------------------------------ parent
def _median(result, length, mask, variant):
    for row in result["rows"]:
        if (row["length"], row["mask"], row["variant"]) == (length, mask, variant):
            return row["median_ms"]
    return None


def report(settings, backends):
    """The combined table and, per backend, which attention path is faster."""
    headers = [
        "backend",
        "T",
        "mask",
        "keras ms",
        "ours ms",
        "ours/keras",
        "explicit ms",
        "fused ms",
        "fused/explicit",
    ]
    rows, summary = [], {}
    for backend, result in backends.items():
        if "error" in result:
            rows.append([backend, "-", "-", result["error"]] + ["-"] * 5)
            continue
        default = FUSED if result["default_fused"] else EXPLICIT
        ours_ratios, fused_ratios = [], []
        for length in settings.lengths:
            for mask in MASKS:
                keras_ms = _median(result, length, mask, KERAS)
                explicit_ms = _median(result, length, mask, EXPLICIT)
                fused_ms = _median(result, length, mask, FUSED)
                ours_ms = _median(result, length, mask, default)
                ours_ratios.append(ours_ms / keras_ms)
                fused_ratios.append(fused_ms / explicit_ms)
                rows.append(
                    [
                        backend,
                        length,
                        mask,
                        harness.fmt(keras_ms, 2),
                        harness.fmt(ours_ms, 2),
                        harness.ratio(ours_ms, keras_ms),
                        harness.fmt(explicit_ms, 2),
                        harness.fmt(fused_ms, 2),
                        harness.ratio(fused_ms, explicit_ms),
                    ]
                )
        fused_geomean = math.exp(sum(map(math.log, fused_ratios)) / len(fused_ratios))
        summary[backend] = {
            "ours_path": default,
            "ours_over_keras_geomean": round(
                math.exp(sum(map(math.log, ours_ratios)) / len(ours_ratios)), 3
            ),
            "ours_over_keras_max": round(max(ours_ratios), 3),
            "fused_over_explicit_geomean": round(fused_geomean, 3),
            "faster_path": FUSED if fused_geomean < 1.0 else EXPLICIT,
        }
    table = harness.markdown_table(headers, rows)
    lines = [table, ""]
    for backend, facts in summary.items():
        lines.append(
            f"- {backend}: ours uses the {facts['ours_path']} path; ours/keras "
            f"geometric mean {facts['ours_over_keras_geomean']:.2f} (worst "
            f"{facts['ours_over_keras_max']:.2f}, target <= 1.00); fused/explicit "
            f"{facts['fused_over_explicit_geomean']:.2f} -> {facts['faster_path']} "
            "is faster"
        )
    fused = [b for b, facts in summary.items() if facts["faster_path"] == FUSED]
    if summary:
        lines.append(
            "- measured `backend_config.FUSED_ATTENTION` for the backends run "
            f"here: {tuple(fused)}"
        )
    return table, "\n".join(lines), summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--repeats", type=int, help="timed steps per variant")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.repeats:
        settings = dataclasses.replace(settings, repeats=args.repeats)

    if args.backend_worker:
        harness.finish_worker(args, run_worker(settings))
        return 0

    backends = harness.run_workers(__file__, args.backends)
    table, text, summary = report(settings, backends)
    print(text)
    path = harness.write_results(
        NAME, args, dataclasses.asdict(settings), backends, table, summary
    )
    harness.log(f"results written to {path}")
    return harness.exit_code(backends)


if __name__ == "__main__":
    sys.exit(main())
