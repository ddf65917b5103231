"""Pytest setup shared by every test module.

The Keras backend is fixed at the first `import keras`, so the suite runs
once per backend (`KERAS_BACKEND=tensorflow`, then `jax`); the header says
which one a run used.
"""

import os

# Silence TensorFlow's C++ logging before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# On NVIDIA GPUs JAX and TensorFlow multiply float32 matrices in TF32 (a
# 10-bit mantissa) by default, while the numerical tests compare two float32
# computations at 1e-5: ask for full float32 matmuls. (No effect on CPUs.)
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

import keras  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"
