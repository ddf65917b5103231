"""Tests for `keras_mha.transformer.Transformer`.

Shape legend: B batch, S source length, T target length (S != T), V target
vocabulary, H heads, N_e / N_d encoder / decoder layers, L_max the cache
length.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_mha.masks import padding_mask
from keras_mha.transformer import Transformer
from tests.layer_test import to_numpy

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
B, S, T, H, N_E, N_D = 2, 7, 5, 2, 2, 1
SOURCE_VOCABULARY, TARGET_VOCABULARY = 23, 29
CONFIG = dict(
    source_vocabulary_size=SOURCE_VOCABULARY,
    target_vocabulary_size=TARGET_VOCABULARY,
    num_encoder_layers=N_E,
    num_decoder_layers=N_D,
    hidden_dim=16,
    intermediate_dim=32,
    num_heads=H,
    dropout=0.1,
    max_length=12,
)
# Example 1 is padded in both the source and the target.
ENCODER_IDS = np.array([[5, 8, 2, 9, 14, 3, 7], [4, 11, 6, 0, 0, 0, 0]], "int32")
DECODER_IDS = np.array([[1, 12, 7, 3, 20], [1, 5, 22, 0, 0]], "int32")
INPUTS = {"encoder_inputs": ENCODER_IDS, "decoder_inputs": DECODER_IDS}


def make_model(**kwargs):
    keras.utils.set_random_seed(0)
    return Transformer(**{**CONFIG, **kwargs})


@pytest.fixture(scope="module")
def model():
    return make_model()


def test_logits_shape(model):
    logits = model(INPUTS)
    assert tuple(logits.shape) == (B, T, TARGET_VOCABULARY)
    assert np.all(np.isfinite(to_numpy(logits)))


def test_attention_scores(model):
    outputs = model(INPUTS, return_attention_scores=True)
    assert set(outputs) == {
        "logits",
        "encoder_attentions",
        "decoder_attentions",
        "cross_attentions",
    }
    np.testing.assert_allclose(
        to_numpy(outputs["logits"]), to_numpy(model(INPUTS)), atol=1e-5
    )
    shapes = {
        "encoder_attentions": (N_E, (B, H, S, S)),
        "decoder_attentions": (N_D, (B, H, T, T)),
        "cross_attentions": (N_D, (B, H, T, S)),
    }
    for name, (num_layers, shape) in shapes.items():
        assert isinstance(outputs[name], list) and len(outputs[name]) == num_layers
        for scores in outputs[name]:
            assert tuple(scores.shape) == shape
    # Cross-attention never looks at source padding.
    for scores in outputs["cross_attentions"]:
        assert np.all(to_numpy(scores)[1, ..., 3:] == 0.0)


def test_config_round_trip(model):
    config = model.get_config()
    json.dumps(config)
    assert Transformer.from_config(config).get_config() == config


def decode_step_by_step(model, head_masks=None, max_length=8):
    """Cached greedy-style decoding of `DECODER_IDS`, one token at a time."""
    encoded = model.encode(ENCODER_IDS, head_masks=head_masks)
    self_cache, cross_cache = model.init_cache(encoded, max_length)
    assert [[tuple(c.shape) for c in layer] for layer in self_cache] == (
        [[(B, H, max_length, 8)] * 2] * N_D
    )
    assert [[tuple(c.shape) for c in layer] for layer in cross_cache] == (
        [[(B, H, S, 8)] * 2] * N_D
    )
    steps = []
    for t in range(T):
        logits, self_cache, decoder_scores, cross_scores = model.decode_step(
            DECODER_IDS[:, t : t + 1],
            t,
            self_cache,
            cross_cache,
            padding_mask(ENCODER_IDS),
            return_attention_scores=True,
            head_masks=head_masks,
        )
        assert tuple(logits.shape) == (B, 1, TARGET_VOCABULARY)
        assert tuple(decoder_scores.shape) == (N_D, B, H, 1, max_length)
        assert tuple(cross_scores.shape) == (N_D, B, H, 1, S)
        steps.append(
            (to_numpy(logits), to_numpy(decoder_scores), to_numpy(cross_scores))
        )
    # (B, T, V), (N_d, B, H, T, L_max), (N_d, B, H, T, S)
    return tuple(np.concatenate(x, axis=-2) for x in zip(*steps))


@pytest.mark.parametrize(
    "variant",
    [{}, {"normalize_first": False, "position_embedding": "learned"}],
    ids=["pre-ln-sinusoidal", "post-ln-learned"],
)
def test_packed_sources_encode_as_each_alone(variant):
    # Both sources of ENCODER_IDS in one row of 10 pieces (7 + 3, the second
    # without its padding), each attending to its own segment only.
    model = make_model(**variant)
    packed = np.zeros((1, 10), "int32")
    packed[0, :7], packed[0, 7:] = ENCODER_IDS[0], ENCODER_IDS[1, :3]
    segments = np.array([[1] * 7 + [2] * 3], "int32")
    together = to_numpy(model.encode(packed, segments=segments))  # (1, 10, D)
    alone = to_numpy(model.encode(ENCODER_IDS))  # (B, S, D)
    np.testing.assert_allclose(together[0, :7], alone[0], atol=1e-5)
    np.testing.assert_allclose(together[0, 7:], alone[1, :3], atol=1e-5)


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"normalize_first": False, "position_embedding": "learned"},
        {"tie_output": False, "head_masks": True},
    ],
    ids=["pre-ln", "post-ln-learned", "untied-head-masks"],
)
def test_cached_decoding_equals_teacher_forced_pass(variant):
    variant = dict(variant)
    head_masks = None
    if variant.pop("head_masks", False):
        head_masks = {
            "encoder": np.array([[1.0, 0.0], [1.0, 1.0]], "float32"),
            "decoder": np.array([[0.0, 1.0]], "float32"),
            "cross": np.array([[1.0, 0.0]], "float32"),
        }
    model = make_model(**variant)
    full = model(INPUTS, return_attention_scores=True, head_masks=head_masks)
    logits, decoder_scores, cross_scores = decode_step_by_step(model, head_masks)

    real = DECODER_IDS != 0  # Padded target positions are not decoded.
    np.testing.assert_allclose(logits[real], to_numpy(full["logits"])[real], atol=1e-4)
    # (N_d, B, H, T, L_max): the first T columns are the full pass's rows.
    full_decoder = np.stack([to_numpy(x) for x in full["decoder_attentions"]])
    full_cross = np.stack([to_numpy(x) for x in full["cross_attentions"]])
    for b in range(B):
        steps = real[b]
        np.testing.assert_allclose(
            decoder_scores[:, b, :, steps, :T],
            full_decoder[:, b, :, steps],
            atol=1e-5,
        )
        np.testing.assert_allclose(
            cross_scores[:, b, :, steps], full_cross[:, b, :, steps], atol=1e-5
        )
    np.testing.assert_array_equal(decoder_scores[..., T:], 0.0)


def test_head_masks(model):
    logits = to_numpy(model(INPUTS))
    all_on = {
        "encoder": np.ones((N_E, H), "float32"),
        "decoder": np.ones((N_D, H), "float32"),
        "cross": np.ones((N_D, H), "float32"),
    }
    np.testing.assert_allclose(
        to_numpy(model(INPUTS, head_masks=all_on)), logits, atol=1e-5
    )
    for kind, num_layers in (("encoder", N_E), ("decoder", N_D), ("cross", N_D)):
        head_mask = np.ones((num_layers, H), "float32")
        head_mask[0, 1] = 0.0
        ablated = to_numpy(model(INPUTS, head_masks={kind: head_mask}))
        assert not np.allclose(ablated, logits, atol=1e-4), kind


def test_shared_embeddings():
    with pytest.raises(ValueError, match="share_embeddings"):
        make_model(share_embeddings=True)
    model = make_model(share_embeddings=True, target_vocabulary_size=SOURCE_VOCABULARY)
    assert model.source_embedding is model.target_embedding
    separate = make_model(target_vocabulary_size=SOURCE_VOCABULARY)
    assert len(model.weights) == len(separate.weights) - 1
    assert tuple(model(INPUTS).shape) == (B, T, SOURCE_VOCABULARY)


def test_untied_output():
    model = make_model(tie_output=False)
    assert model.output_dense is not None
    tied = make_model()
    assert len(model.weights) == len(tied.weights) + 2  # Kernel and bias.
    assert tuple(model(INPUTS).shape) == (B, T, TARGET_VOCABULARY)


@pytest.mark.parametrize(
    "initializers",
    [{}, {"kernel_initializer": "he_normal", "embeddings_initializer": "uniform"}],
    ids=["default", "given"],
)
def test_every_weight_starts_from_its_own_random_values(initializers):
    # One initializer instance draws the same values at every call: shared
    # between weights, the query, key and value kernels of a layer (and the
    # same kernel in every layer) would start out equal.
    model = make_model(
        target_vocabulary_size=SOURCE_VOCABULARY, tie_output=False, **initializers
    )
    random = [
        w
        for w in model.weights
        if not np.all(to_numpy(w.value) == to_numpy(w.value).flat[0])
    ]
    assert any("query_kernel" in w.path for w in random)
    assert any("embeddings" in w.path for w in random)
    values = {to_numpy(w.value).tobytes(): w.path for w in random}
    duplicates = [
        w.path for w in random if values[to_numpy(w.value).tobytes()] != w.path
    ]
    assert duplicates == []


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {
            "share_embeddings": True,
            "target_vocabulary_size": SOURCE_VOCABULARY,
            "tie_output": False,
        },
    ],
    ids=["default", "shared-untied"],
)
def test_save_and_load(tmp_path, variant):
    model = make_model(**variant)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is Transformer
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(to_numpy(loaded(INPUTS)), to_numpy(model(INPUTS)))
    encoded = to_numpy(loaded.encode(ENCODER_IDS))
    np.testing.assert_array_equal(encoded, to_numpy(model.encode(ENCODER_IDS)))


# ---------------------------------------------------------- cross-backend
OTHER_BACKEND = {"tensorflow": "jax", "jax": "tensorflow"}.get(keras.backend.backend())
OTHER_SCRIPT = """
import json
import sys

import keras
import numpy as np

from keras_mha.transformer import Transformer

directory, expected_backend, config = sys.argv[1:]
assert keras.backend.backend() == expected_backend, keras.backend.backend()
inputs = {
    name: np.load(f"{directory}/{name}.npy")
    for name in ("encoder_inputs", "decoder_inputs")
}
# Load the model saved by the parent process...
loaded = keras.saving.load_model(f"{directory}/here.keras", safe_mode=True)
# `predict` compiles the forward pass once; eager JAX compiles op by op.
np.save(f"{directory}/here_logits_there.npy", loaded.predict(inputs, verbose=0))
# ... and save one for the parent to load.
keras.utils.set_random_seed(1)
model = Transformer.from_config(json.loads(config))
model.save(f"{directory}/there.keras")
np.save(f"{directory}/there_logits.npy", model.predict(inputs, verbose=0))
"""


@pytest.fixture(scope="module")
def other_backend(tmp_path_factory):
    """Saves a model here, then loads it and saves another in a subprocess
    running the other backend (the backend is fixed at `import keras`)."""
    if OTHER_BACKEND is None or importlib.util.find_spec(OTHER_BACKEND) is None:
        pytest.skip(f"the other backend ({OTHER_BACKEND}) is not installed")
    directory = tmp_path_factory.mktemp("cross_backend")
    for name, ids in INPUTS.items():
        np.save(directory / f"{name}.npy", ids)
    model = make_model(tie_output=False)
    model.save(directory / "here.keras")
    np.save(directory / "here_logits.npy", to_numpy(model(INPUTS)))

    env = {
        **os.environ,
        "KERAS_BACKEND": OTHER_BACKEND,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
        ),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    config = json.dumps(make_model().get_config())
    command = [sys.executable, "-c", OTHER_SCRIPT, str(directory), OTHER_BACKEND]
    result = subprocess.run(
        command + [config], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return directory


def test_saved_here_loads_under_the_other_backend(other_backend):
    np.testing.assert_allclose(
        np.load(other_backend / "here_logits_there.npy"),
        np.load(other_backend / "here_logits.npy"),
        atol=1e-5,
    )


def test_saved_under_the_other_backend_loads_here(other_backend):
    loaded = keras.saving.load_model(other_backend / "there.keras", safe_mode=True)
    assert type(loaded) is Transformer
    np.testing.assert_allclose(
        to_numpy(loaded(INPUTS)), np.load(other_backend / "there_logits.npy"), atol=1e-5
    )
