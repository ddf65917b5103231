"""Training CLI: a tiny end-to-end run, kill and resume, data parallelism."""

import dataclasses
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_mha import Translator
from training import train as train_lib
from training.objectives import MaskedSparseCrossentropy, WarmupInverseSqrt

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TINY_FLAGS = [
    "--dataset",
    "spa-eng",
    "--data-dir",
    str(FIXTURES),
    "--num-layers",
    "1",
    "--hidden-dim",
    "32",
    "--intermediate-dim",
    "64",
    "--num-heads",
    "2",
    "--vocabulary-size",
    "200",
    "--batch-tokens",
    "512",
    "--max-length",
    "32",
    "--warmup-steps",
    "10",
    "--learning-rate",
    "0.005",
]


def test_flags_override_dataset_defaults():
    config = train_lib.parse_config(["--dataset", "multi30k-en-de", "--epochs", "3"])
    assert config.epochs == 3
    assert config.out == "saved_models/en-de"
    assert (
        config.vocabulary_size
        == train_lib.DATASET_DEFAULTS["multi30k-en-de"]["vocabulary_size"]
    )
    assert train_lib.parse_config(["--no-normalize-first"]).normalize_first is False


# Every setting that changes the trained weights, apart from where data and
# outputs live.
NOT_RECIPE = (
    "out",
    "data_dir",
    "resume",
    "distribute",
    "host_devices",
    "input_pipeline",
)
RECIPE_FIELDS = [
    f for f in train_lib.TrainConfig.__dataclass_fields__ if f not in NOT_RECIPE
]


@pytest.mark.parametrize(
    "folder",
    sorted((ROOT / "saved_models").glob("*/metrics.json")),
    ids=lambda path: path.parent.name,
)
def test_dataset_defaults_reproduce_the_shipped_models(folder):
    shipped = json.loads(folder.read_text())
    config = dataclasses.asdict(
        train_lib.parse_config(["--dataset", shipped["dataset"]])
    )
    assert config["out"] == f"saved_models/{folder.parent.name}"
    assert {k: config[k] for k in RECIPE_FIELDS} == {
        k: shipped["config"].get(k) for k in RECIPE_FIELDS
    }


def test_loss_ignores_padding_and_smooths_labels():
    logits = np.log(np.array([[[0.7, 0.1, 0.1, 0.1], [0.25] * 4]], "float32"))
    labels = np.array([[0, 1]])  # first position is padding (id 0)
    plain = float(MaskedSparseCrossentropy(0.0)(labels, logits))
    assert np.isclose(plain, -np.log(0.25), atol=1e-5)  # only position 2
    smoothed = float(MaskedSparseCrossentropy(0.1)(labels, logits))
    assert np.isclose(smoothed, -np.log(0.25), atol=1e-5)  # uniform row


def test_learning_rate_warms_up_then_decays():
    schedule = WarmupInverseSqrt(1e-3, 100)
    lrs = [float(schedule(s)) for s in (0, 49, 99, 399)]
    assert lrs[0] < lrs[1] < lrs[2]
    assert np.isclose(lrs[2], 1e-3, rtol=1e-3)
    assert np.isclose(lrs[3], 0.5e-3, rtol=1e-2)


def test_one_tiny_training_run_end_to_end(tmp_path):
    out = tmp_path / "model"
    config = train_lib.parse_config(TINY_FLAGS + ["--out", str(out), "--epochs", "2"])
    metrics = train_lib.train(config, command="test")
    for name in ("model.keras", "spm.model", "spm.vocab.txt", "model_card.md"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["epochs_trained"] == 2 and saved["steps"] > 0
    assert saved["skipped_lines"] == 5  # the malformed lines of the fixture
    assert saved["backend"] == keras.backend.backend()
    history = metrics["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    translation = Translator.load(out).translate("I love you.")
    assert translation.attention["cross"].shape[0] == 1


def test_numpy_input_pipeline_trains_without_tf_data(tmp_path):
    """`--input-pipeline numpy` (what machines without TensorFlow get)."""
    out = tmp_path / "model"
    config = train_lib.parse_config(
        TINY_FLAGS + ["--out", str(out), "--epochs", "2", "--input-pipeline", "numpy"]
    )
    assert train_lib.input_pipeline(config) == "numpy"
    metrics = train_lib.train(config, command="test")
    assert metrics["input_pipeline"] == "numpy" and metrics["steps"] > 0
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    assert "val_loss" in metrics["history"][-1]
    assert Translator.load(out).translate("I love you.").text is not None


def test_input_pipeline_auto_prefers_tf_data_where_installed():
    config = train_lib.parse_config(["--input-pipeline", "auto"])
    expected = "tf" if importlib.util.find_spec("tensorflow") else "numpy"
    assert train_lib.input_pipeline(config) == expected
    with pytest.raises(ValueError, match="input_pipeline=torch"):
        train_lib.input_pipeline(train_lib.parse_config(["--input-pipeline", "torch"]))


def _run(args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "training.train", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_resume_after_sigkill_continues_from_the_checkpoint(tmp_path):
    out = tmp_path / "model"
    flags = TINY_FLAGS + ["--out", str(out), "--epochs", "40", "--batch-tokens", "256"]
    process = _run(flags)
    state = out / "checkpoints" / "state.json"
    deadline = time.time() + 400
    while not state.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert state.exists(), process.communicate()[0][-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = json.loads(state.read_text())
    assert 1 <= saved["epoch"] < 40 and saved["step"] > 0
    assert not (out / "model.keras").exists()  # Killed before the end.

    resumed = _run(
        TINY_FLAGS
        + ["--out", str(out), "--epochs", str(saved["epoch"] + 1), "--resume"]
    )
    log = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, log[-3000:]
    assert f"Resumed at epoch {saved['epoch']}, step {saved['step']}" in log
    final = json.loads((out / "metrics.json").read_text())
    assert final["resumed_from_step"][-1] == saved["step"]
    assert final["steps"] > saved["step"]
    assert final["epochs_trained"] == saved["epoch"] + 1
    Translator.load(out).translate("Hello.")


@pytest.mark.slow
def test_distribute_over_two_host_devices(tmp_path):
    out = tmp_path / "model"
    process = _run(
        TINY_FLAGS
        + ["--out", str(out), "--epochs", "1", "--distribute", "--host-devices", "2"],
        env=dict(os.environ),
    )
    log = process.communicate(timeout=600)[0]
    assert process.returncode == 0, log[-3000:]
    assert "over 2" in log  # DataParallel / MirroredStrategy over 2 devices
    assert json.loads((out / "metrics.json").read_text())["steps"] > 0
