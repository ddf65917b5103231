"""Pytest setup shared by every test module.

The Keras backend is fixed at the first `import keras`, so the suite runs
once per backend (`KERAS_BACKEND=tensorflow`, then `jax`); the header says
which one a run used.
"""

import os
import tempfile

# Silence TensorFlow's C++ logging before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# On NVIDIA GPUs JAX and TensorFlow multiply float32 matrices in TF32 (a
# 10-bit mantissa) by default, while the numerical tests compare two float32
# computations at 1e-5: ask for full float32 matmuls. (No effect on CPUs.)
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
# JAX keeps the programs it compiles on disk for this run (every search,
# however quick to compile), so that a test process and the processes it
# starts (training runs, `python app.py`, the other backend) load a program
# that an earlier test compiled instead of compiling it again. The cache is
# XLA's own (keyed by the program and the compiler); results are unchanged.
_JAX_CACHE = tempfile.TemporaryDirectory(prefix="keras-mha-tests-jax-")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _JAX_CACHE.name)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import keras  # noqa: E402
import pytest  # noqa: E402

# A test marked `cross_backend` runs this backend and the other one (in a
# subprocess) and compares them: under both backends it would compare the
# same pair twice, so it runs under this one only.
CROSS_BACKEND_RUN = "tensorflow"

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


def pytest_collection_modifyitems(config, items):
    if keras.backend.backend() == CROSS_BACKEND_RUN:
        return
    skip = pytest.mark.skip(
        reason=f"compares TensorFlow with JAX: runs under {CROSS_BACKEND_RUN}"
    )
    for item in items:
        if "cross_backend" in item.keywords:
            item.add_marker(skip)
