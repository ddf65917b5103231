"""Training CLI: a tiny end-to-end run, kill and resume, data parallelism."""

import dataclasses
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import sentencepiece

from keras_mha import Translator
from keras_mha.tokens import CONTROL_PIECES
from training import data as data_lib
from training import recipes as recipes_lib
from training import train as train_lib
from training.objectives import (
    MaskedAccuracy,
    MaskedSparseCrossentropy,
    WarmupInverseSqrt,
)
from training.recipes import NOT_RECIPE

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TINY_MODEL = FIXTURES / "models" / "en-es-tiny"
TINY_FLAGS = [
    "--recipe",
    "en-es",
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
    "16",  # Three length buckets (8, 12, 16): three shapes to compile.
    "--warmup-steps",
    "10",
    "--learning-rate",
    "0.005",
]


RECIPES = ROOT / "training" / "recipes"
# Every setting that changes the trained weights.
RECIPE_FIELDS = [
    f for f in train_lib.TrainConfig.__dataclass_fields__ if f not in NOT_RECIPE
]


def tiny_config(out, *flags):
    return train_lib.parse_config(TINY_FLAGS + ["--out", str(out), *flags])


def test_flags_override_the_recipe():
    config = train_lib.parse_config(
        ["--recipe", "en-de-multi30k", "--out", "runs/x", "--epochs", "3"]
    )
    recipe = recipes_lib.load_recipe("en-de-multi30k")
    assert config.epochs == 3 and recipe.config["epochs"] == 80
    assert config.vocabulary_size == recipe.config["vocabulary_size"] == 5000
    assert config.recipe == "en-de-multi30k" and config.out == "runs/x"
    config = train_lib.parse_config(
        ["--recipe", "en-es", "--out", "x", "--no-normalize-first"]
    )
    assert config.normalize_first is False


def test_the_dataset_selects_its_recipe():
    config = train_lib.parse_config(["--dataset", "multi30k-en-de", "--out", "x"])
    assert config.recipe == "en-de-multi30k"
    assert (config.num_layers, config.hidden_dim) == (4, 128)
    config = train_lib.parse_config(["--dataset", "deu-eng", "--out", "x"])
    assert config.recipe == "en-de"
    # A recipe and another dataset: the recipe's values on that dataset.
    config = train_lib.parse_config(
        ["--recipe", "en-de-multi30k", "--dataset", "multi30k-en-fr", "--out", "x"]
    )
    assert config.dataset == "multi30k-en-fr" and config.num_layers == 4


@pytest.mark.parametrize("dataset", sorted(data_lib.DATASETS))
def test_every_dataset_has_a_recipe_or_is_refused(dataset, capsys):
    recipes = [
        name
        for name in recipes_lib.names()
        if recipes_lib.load_recipe(name).config["dataset"] == dataset
    ]
    if recipes:
        assert len(recipes) == 1, recipes
        config = train_lib.parse_config(["--dataset", dataset, "--out", "x"])
        assert config.recipe == recipes[0] and config.dataset == dataset
        return
    with pytest.raises(SystemExit):
        train_lib.parse_config(["--dataset", dataset, "--out", "x"])
    error = capsys.readouterr().err
    assert f"No recipe trains on dataset '{dataset}'" in error
    assert "--recipe NAME" in error


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--recipe", "en-xx", "--out", "x"], "Received: recipe='en-xx'"),
        (["--dataset", "klingon", "--out", "x"], "Received: dataset='klingon'"),
        (["--out", "x"], "Choose what to train with `--recipe NAME`"),
        (["--recipe", "en-es"], "the following arguments are required: --out"),
    ],
)
def test_unknown_names_and_missing_choices_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        train_lib.parse_config(argv)
    assert message in capsys.readouterr().err


def test_recipes_hold_examples_and_only_settings_of_the_weights():
    assert sorted(p.stem for p in RECIPES.glob("*.toml")) == recipes_lib.names()
    assert {"en-es", "en-de", "en-fr", "en-de-multi30k"} <= set(recipes_lib.names())
    for name in recipes_lib.names():
        recipe = recipes_lib.load_recipe(name)
        assert set(recipe.config) <= set(RECIPE_FIELDS), name
        assert recipe.config["dataset"] in data_lib.DATASETS
        assert len(recipe.examples) >= 3
        assert all(e and e.strip() == e for e in recipe.examples), name


def test_a_recipe_file_may_not_set_where_outputs_go(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[config]\ndataset = "spa-eng"\nout = "saved_models/en-es"\n')
    with pytest.raises(ValueError, match=r"cannot hold: \['out'\]"):
        recipes_lib.load_recipe(path)
    path.write_text('examples = ["Hi."]\n[config]\ndataset = "spa-eng"\nepochs = 2\n')
    config = train_lib.parse_config(["--recipe", str(path), "--out", "x"])
    assert config.recipe == "mine" and config.epochs == 2


def test_a_recipe_mix_is_its_training_set_and_a_flag_overrides_it(tmp_path):
    path = tmp_path / "mixed.toml"
    path.write_text(
        '[config]\ndataset = "spa-eng"\n'
        '[[config.mix]]\ndataset = "spa-eng"\n'
        '[[config.mix]]\ndataset = "spa-eng"\nmin_words = 6\nrepeat = 3\n'
    )
    flags = ["--recipe", str(path), "--out", "x", "--data-dir", str(FIXTURES)]
    config = train_lib.parse_config(flags)
    assert [(p["dataset"], p["repeat"], p["min_words"]) for p in config.mix] == [
        ("spa-eng", 1, 0),
        ("spa-eng", 3, 6),
    ]
    loaded = train_lib.load_data(config)
    everyday = data_lib.load_pairs("spa-eng", "train", FIXTURES)
    long = [pair for pair in everyday if len(pair[0].split()) >= 6]
    assert loaded["train_pairs"] == everyday + 3 * long
    assert loaded["valid_pairs"] == data_lib.load_pairs("spa-eng", "valid", FIXTURES)
    assert loaded["mix_stats"]["spa-eng[1]"]["pairs"] == 3 * len(long)
    config = train_lib.parse_config([*flags, "--mix", '[{"dataset": "spa-eng"}]'])
    assert len(config.mix) == 1
    assert "mix" in train_lib.RESUME_MUST_MATCH


def test_a_mix_of_other_languages_than_the_dataset_is_refused(tmp_path):
    path = tmp_path / "wrong.toml"
    path.write_text(
        '[config]\ndataset = "spa-eng"\n[[config.mix]]\ndataset = "multi30k-en-de"\n'
    )
    with pytest.raises(ValueError, match="other languages than its dataset"):
        train_lib.parse_config(["--recipe", str(path), "--out", "x"])


@pytest.mark.parametrize(
    "folder",
    sorted((ROOT / "saved_models").glob("*/metrics.json")),
    ids=lambda path: path.parent.name,
)
def test_each_shipped_model_was_trained_with_its_recipe(folder):
    shipped = json.loads(folder.read_text())
    name = folder.parent.name
    config = dataclasses.asdict(
        train_lib.parse_config(["--recipe", name, "--out", f"runs/{name}"])
    )
    assert {k: config[k] for k in RECIPE_FIELDS} == {
        k: shipped["config"].get(k) for k in RECIPE_FIELDS
    }
    assert shipped["config"]["recipe"] == name
    # Selecting by dataset gives the same recipe.
    by_dataset = train_lib.parse_config(["--dataset", shipped["dataset"], "--out", "x"])
    assert by_dataset.recipe == name


def test_docs_describe_every_recipe():
    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    for name in recipes_lib.names():
        dataset = recipes_lib.load_recipe(name).config["dataset"]
        assert f"| `{name}` | `{dataset}`" in text, name


# The output folder: refusals found before any training.


def test_a_non_empty_output_folder_is_refused(tmp_path):
    (tmp_path / "model.keras").write_text("a finished model")
    with pytest.raises(train_lib.OutputFolderError, match="is not empty"):
        train_lib.train(tiny_config(tmp_path))
    assert (tmp_path / "model.keras").read_text() == "a finished model"
    with pytest.raises(SystemExit, match="--resume.*--overwrite"):
        train_lib.main(TINY_FLAGS + ["--out", str(tmp_path)])


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    config = tiny_config(tmp_path, "--resume", "--overwrite")
    with pytest.raises(train_lib.OutputFolderError, match="choose one"):
        train_lib.prepare_output(config)


def test_overwrite_deletes_only_what_a_run_writes(tmp_path):
    for name in ("model.keras", "metrics.json", "spm.model"):
        (tmp_path / name).write_text("old")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch_009.weights.h5").write_text("old")
    out = train_lib.prepare_output(tiny_config(tmp_path, "--overwrite"))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]
    assert not list((out / "checkpoints").iterdir())

    (tmp_path / "README.md").write_text("not a run's file")
    with pytest.raises(train_lib.OutputFolderError, match=r"README\.md"):
        train_lib.prepare_output(tiny_config(tmp_path, "--overwrite"))
    assert (tmp_path / "README.md").exists()


def test_a_tokenizer_of_another_vocabulary_size_is_refused(tmp_path):
    shutil.copy(TINY_MODEL / "spm.model", tmp_path / "spm.model")  # 200 pieces
    config = tiny_config(tmp_path, "--resume", "--vocabulary-size", "300")
    with pytest.raises(train_lib.OutputFolderError, match="vocabulary of 200"):
        train_lib.train(config)


def test_resuming_with_another_model_shape_is_refused(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "last_001.keras").write_text("stand-in")
    state = {
        "epoch": 1,
        "step": 5,
        "last_checkpoint": "last_001.keras",
        "config": {"num_layers": 2, "dataset": "spa-eng"},
    }
    (checkpoints / "state.json").write_text(json.dumps(state))
    with pytest.raises(train_lib.OutputFolderError, match="num_layers was 2, now 1"):
        train_lib.train(tiny_config(tmp_path, "--resume"))


def _tiny_keras_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    return model


def test_a_crash_before_the_state_is_written_resumes_the_epoch_it_names(
    tmp_path, monkeypatch
):
    model = _tiny_keras_model()
    state = {"_epoch_start": time.time()}
    callback = train_lib.Checkpoint(tmp_path, average_last=2, state=state)
    callback.set_model(model)
    callback.on_epoch_end(0, {"val_loss": 1.0})
    first = model.get_weights()
    model.set_weights([w + 1 for w in first])

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(train_lib, "atomic_write_text", crash)
    with pytest.raises(OSError):
        callback.on_epoch_end(1, {"val_loss": 0.5})  # Dies writing the state.
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["epoch"] == 1 and saved["last_checkpoint"] == "last_001.keras"
    # The checkpoint the state names holds that epoch's model, not a later one.
    restored = keras.saving.load_model(train_lib.last_checkpoint(tmp_path, saved))
    for a, b in zip(restored.get_weights(), first):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()
    callback.on_epoch_end(1, {"val_loss": 0.5})
    assert sorted(p.name for p in tmp_path.glob("last_*.keras")) == ["last_002.keras"]


def test_a_run_without_one_finite_validation_loss_still_ends(tmp_path):
    config = tiny_config(tmp_path, "--average-last", "1")
    model = train_lib.build_model(config, config.vocabulary_size)
    model.save_weights(tmp_path / "epoch_001.weights.h5")
    state = {"epoch": 1, "epoch_checkpoints": ["epoch_001.weights.h5"]}  # No best.
    chosen, weights, losses = train_lib.select_final_weights(
        config, config.vocabulary_size, tmp_path, state, valid_ds=None
    )
    assert chosen == "last_epoch_1" and len(weights) == len(model.get_weights())


def test_only_this_runs_epoch_checkpoints_are_averaged(tmp_path):
    for epoch in (1, 2, 3, 7):
        (tmp_path / f"epoch_{epoch:03d}.weights.h5").write_text("")
    state = {"epoch": 3, "epoch_checkpoints": ["epoch_002.weights.h5"]}
    assert train_lib.epoch_checkpoints(tmp_path, state) == [
        tmp_path / "epoch_002.weights.h5"
    ]
    # A state without the list: the files of its own epochs only.
    assert train_lib.epoch_checkpoints(tmp_path, {"epoch": 2}) == [
        tmp_path / "epoch_001.weights.h5",
        tmp_path / "epoch_002.weights.h5",
    ]


def test_loss_ignores_padding_and_smooths_labels():
    logits = np.log(np.array([[[0.7, 0.1, 0.1, 0.1], [0.25] * 4]], "float32"))
    labels = np.array([[0, 1]])  # first position is padding (id 0)
    plain = float(MaskedSparseCrossentropy(0.0)(labels, logits))
    assert np.isclose(plain, -np.log(0.25), atol=1e-5)  # only position 2
    smoothed = float(MaskedSparseCrossentropy(0.1)(labels, logits))
    assert np.isclose(smoothed, -np.log(0.25), atol=1e-5)  # uniform row


def test_accuracy_is_the_share_of_right_tokens_over_every_batch():
    """Not the mean of per-batch shares: a batch of 1 token and a batch of
    3 tokens count as 4 tokens, on every backend."""
    one_hot = np.eye(4, dtype="float32")
    metric = MaskedAccuracy()
    metric.update_state(np.array([[2, 0, 0]]), one_hot[[[2, 1, 1]]])  # 1 of 1
    metric.update_state(np.array([[1, 2, 3]]), one_hot[[[1, 1, 1]]])  # 1 of 3
    assert np.isclose(float(metric.result()), 2 / 4)
    config = metric.get_config()
    assert MaskedAccuracy.from_config(config).get_config() == config


def test_fit_reports_the_token_share_on_every_backend(tmp_path):
    """What `evaluate` (and so `fit`'s `val_masked_accuracy`) reports is the
    share of right non-padding tokens over the whole split, whether or not
    the backend hands the metric the model's padding mask: here a batch of
    6 tokens, all right, and one of 22 tokens, all wrong, give 6 / 28."""
    config = tiny_config(tmp_path / "run")
    model = train_lib.compile_model(train_lib.build_model(config, 200), config)
    rng = np.random.default_rng(0)
    batches = []
    for length, rows, real, right in ((4, 6, 1, True), (12, 2, 11, False)):
        inputs = {
            "encoder_inputs": rng.integers(4, 200, (rows, length)),
            "decoder_inputs": rng.integers(4, 200, (rows, length)),
        }
        guesses = np.argmax(model.predict_on_batch(inputs), axis=-1)  # (B, T)
        labels = guesses if right else guesses % 199 + 1  # Never 0 if wrong.
        labels = np.where(np.arange(length) < real, labels, 0)
        batches.append((inputs, labels))
    assert [np.sum(labels != 0) for _, labels in batches] == [6, 22]
    reported = model.evaluate(
        (b for b in batches), steps=2, return_dict=True, verbose=0
    )
    assert np.isclose(reported["masked_accuracy"], 6 / 28, atol=1e-6)  # Not 1/2.


def test_learning_rate_warms_up_then_decays():
    schedule = WarmupInverseSqrt(1e-3, 100)
    lrs = [float(schedule(s)) for s in (0, 49, 99, 399)]
    assert lrs[0] < lrs[1] < lrs[2]
    assert np.isclose(lrs[2], 1e-3, rtol=1e-3)
    assert np.isclose(lrs[3], 0.5e-3, rtol=1e-2)


def assert_translates(folder, text):
    """The trained folder loads and its text is the detokenized output."""
    translation = Translator.load(folder).translate(text, return_attention=True)
    processor = sentencepiece.SentencePieceProcessor(
        model_file=str(folder / "spm.model")
    )
    pieces = [p for p in translation.target_tokens if p not in CONTROL_PIECES]
    assert pieces == translation.target_tokens[: len(pieces)]  # Then `</s>`.
    assert translation.text == processor.decode_pieces(pieces)
    return translation


def test_one_tiny_training_run_end_to_end(tmp_path):
    out = tmp_path / "model"
    # A stale epoch file from elsewhere: a fresh start must not average it.
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "epoch_007.weights.h5").write_text("not weights")
    # Small batches: several steps in each epoch, so the loss falls.
    config = tiny_config(out, "--epochs", "2", "--batch-tokens", "128", "--resume")
    metrics = train_lib.train(config, command="test")
    for name in ("model.keras", "spm.model", "spm.vocab.txt", "model_card.md"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["epochs_trained"] == 2 and saved["steps"] > 0
    assert saved["skipped_lines"] == 5  # the malformed lines of the fixture
    assert saved["backend"] == keras.backend.backend()
    # Candidates: the average of this run's 2 epochs and its best epoch.
    assert len(saved["valid_loss"]) == 2 and "average_last_2" in saved["valid_loss"]
    assert saved["domain"] == "everyday sentences"
    assert saved["examples"] == list(recipes_lib.load_recipe("en-es").examples)
    assert saved["config"]["recipe"] == "en-es"
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch_checkpoints"] == [f"epoch_00{i}.weights.h5" for i in (1, 2)]
    history = metrics["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    translation = assert_translates(out, "I love you.")
    assert translation.attention["cross"].shape[0] == 1
    # A second run into the finished folder is refused and leaves it alone.
    model_bytes = (out / "model.keras").read_bytes()
    with pytest.raises(train_lib.OutputFolderError, match="is not empty"):
        train_lib.train(tiny_config(out, "--epochs", "2"))
    assert (out / "model.keras").read_bytes() == model_bytes


def test_numpy_input_pipeline_trains_without_tf_data(tmp_path):
    """`--input-pipeline numpy` (what machines without TensorFlow get)."""
    out = tmp_path / "model"
    config = tiny_config(  # Small batches: several steps in each epoch.
        out, "--epochs", "2", "--batch-tokens", "128", "--input-pipeline", "numpy"
    )
    assert train_lib.input_pipeline(config) == "numpy"
    metrics = train_lib.train(config, command="test")
    assert metrics["input_pipeline"] == "numpy" and metrics["steps"] > 0
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    assert "val_loss" in metrics["history"][-1]
    assert_translates(out, "I love you.")


def test_mixed_bfloat16_trains_in_bfloat16_and_saves_a_float32_model(tmp_path):
    """`--dtype-policy mixed_bfloat16`: float32 weights, bfloat16 matmuls in
    training (the checkpoint keeps the policy, so a resumed run keeps it);
    the model a run saves computes in float32 like any other."""
    out = tmp_path / "model"
    config = tiny_config(
        out,
        "--epochs",
        "2",
        "--batch-tokens",
        "128",
        "--dtype-policy",
        "mixed_bfloat16",
    )
    metrics = train_lib.train(config, command="test")
    assert metrics["config"]["dtype_policy"] == "mixed_bfloat16"
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    checkpoint = keras.saving.load_model(out / "checkpoints" / state["last_checkpoint"])
    assert checkpoint.dtype_policy.name == "mixed_bfloat16"
    assert checkpoint.compute_dtype == "bfloat16"
    model = keras.saving.load_model(out / "model.keras")
    assert model.dtype_policy.name == "float32"
    assert {w.dtype for w in model.weights} == {"float32"}
    assert_translates(out, "I love you.")


def test_other_dtype_policies_are_refused():
    with pytest.raises(ValueError, match="dtype_policy='float16'"):
        tiny_config("x", "--dtype-policy", "float16")


def test_input_pipeline_auto_prefers_tf_data_where_installed():
    config = tiny_config("x", "--input-pipeline", "auto")
    expected = "tf" if importlib.util.find_spec("tensorflow") else "numpy"
    assert train_lib.input_pipeline(config) == expected
    with pytest.raises(ValueError, match="input_pipeline=torch"):
        train_lib.input_pipeline(tiny_config("x", "--input-pipeline", "torch"))


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
    assert_translates(out, "Hello.")


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
