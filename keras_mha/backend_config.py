"""Backend-specific speed switches, in one place.

The layers compute the same numbers on every backend; these switches only
choose between equivalent formulations where one was measured to be faster
on a backend. Each set names only the backends it was measured on
(TensorFlow 2.21 and JAX 0.10 on a 2-core x86-64 CPU, Keras 3.15); any other
backend, PyTorch included, takes the plain formulation. The measurements are
in docs/performance.md, the scripts in benchmarks/.

The layers read the sets at call time, so a benchmark or a test can swap one
(e.g. `monkeypatch.setattr(backend_config, "FUSED_ATTENTION", ("jax",))`).
"""

import keras

# `keras.ops.dot_product_attention` instead of the explicit einsum/softmax
# attention (when no scores are requested and no dropout runs).
# benchmarks/bench_attention.py, forward + backward: about 4 % faster on JAX;
# on TensorFlow Keras implements the fused op with the same einsums, so it
# wins nothing there.
FUSED_ATTENTION = ("jax",)

# The head projections as a `matmul` with the kernel viewed as 2-D instead of
# an einsum with the 3-D kernel. TensorFlow trains without XLA on a CPU
# (Keras' `jit_compile="auto"`), and there its einsum and einsum gradient
# for these contractions are much slower than a plain matmul
# (benchmarks/bench_training.py). Under XLA (JAX) the reshapes were not
# faster, so the einsum stays.
MATMUL_PROJECTIONS = ("tensorflow",)

# The tied output projection with its own gradient, `(hidden^T @
# logits_grad)^T`. Under XLA the automatic gradient first copies the whole
# `(N, V)` logits gradient into transposed layout, the largest copy of a JAX
# training step; with the custom gradient XLA's optimized program has no
# such copy (benchmarks/bench_training.py: 1.07x keras-hub against 0.99x
# without it). TensorFlow on a CPU runs without XLA and keeps the automatic
# gradient.
TIED_LOGITS_GRADIENT = ("jax",)


def enable_compilation_cache(directory):
    """Keeps compiled programs on disk so a new process reuses them (JAX).

    A JAX process compiles every search shape again at its first use (a few
    seconds each on a CPU); with this cache a later process loads them
    instead. TensorFlow has no such cache (its `tf.function` traces again).

    Args:
        directory: str or path; created if needed.

    Returns:
        True when the cache was enabled (the backend is JAX).
    """
    if keras.backend.backend() != "jax":
        return False
    import jax  # Only on the JAX backend.

    jax.config.update("jax_compilation_cache_dir", str(directory))
    # Cache every search, not only the programs that compile for over 1 s.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return True


def uses(switch):
    """Whether the current Keras backend is in `switch`, one of the sets above."""
    return keras.backend.backend() in switch
