"""Pytest setup shared by every test module.

The Keras backend is fixed at the first `import keras`, so the suite runs
once per backend (`KERAS_BACKEND=tensorflow`, then `jax`); the header says
which one a run used.
"""

import os

# Silence TensorFlow's C++ logging before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"
