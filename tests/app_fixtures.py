"""Helpers for the app tests: import `app` on the fixture models, serve it.

Kept out of `conftest.py` so that the app tests stay self-contained.
"""

import contextlib
import importlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE_MODELS = REPO_ROOT / "tests" / "fixtures" / "models"
TINY_MODEL = "en-es-tiny"


@contextlib.contextmanager
def import_app(models_dir=FIXTURE_MODELS):
    """Imports a fresh `app` module that reads its models from `models_dir`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_MHA_MODELS_DIR", str(models_dir))
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        sys.modules.pop("app", None)
        try:
            yield importlib.import_module("app")
        finally:
            sys.modules.pop("app", None)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(models_dir=FIXTURE_MODELS, timeout=300):
    """Runs `python app.py` on a free localhost port; yields its URL."""
    port = _free_port()
    env = dict(
        os.environ,
        KERAS_MHA_MODELS_DIR=str(models_dir),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    url = f"http://127.0.0.1:{port}/"
    # A file, not a pipe: a full pipe would block the server.
    log = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def output():
        log.seek(0)
        return log.read()[-5000:]

    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"app.py exited early:\n{output()}")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"No answer on {url} in {timeout} s:\n{output()}")
                time.sleep(1)
        yield url
        assert process.poll() is None, f"app.py died:\n{output()}"
    finally:
        # Ctrl-C, so that the app exits normally and removes its temp files.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
