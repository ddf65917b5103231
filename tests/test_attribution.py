"""Attribution and the logit lens: keras_mha.attribution, Translator.attribute,
`layer_predictions`."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_mha import Translator

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "models" / "en-es-tiny"
SOURCE, TARGET = "Where is the train station?", "¿Dónde está la estación?"


@pytest.fixture(scope="module")
def translator():
    return Translator.load(TINY)


def test_attributions_explain_each_output_piece_from_earlier_pieces(translator):
    for method in ("grad_x_input", "integrated_gradients"):
        a = translator.attribute(SOURCE, TARGET, method=method, steps=8)
        T, S = len(a.target_tokens), len(a.source_tokens)
        assert a.source.shape == (T, S) and a.target.shape == (T, T)
        assert a.target_tokens[-1] == "</s>" and a.decoder_input_tokens[0] == "<s>"
        # Causal: output piece t depends on decoder inputs 0..t only.
        np.testing.assert_array_equal(np.triu(a.target, 1), 0.0)
        assert np.all((0 <= a.source_share) & (a.source_share <= 1))
        # The explained values are the pieces' log-probabilities.
        scored = translator.score(SOURCE, TARGET, return_attention=False)
        np.testing.assert_allclose(
            np.exp(a.values), scored.token_probs, rtol=1e-4, atol=1e-6
        )


def test_integrated_gradients_are_complete():
    # The attributions of each piece sum to f(input) - f(baseline), up to
    # the midpoint rule's error, which falls as the steps grow.
    translator = Translator.load(TINY)
    errors = []
    for steps in (4, 64):
        a = translator.attribute(SOURCE, TARGET, steps=steps)
        difference = np.abs(a.values - a.baseline_values)
        errors.append(np.max(a.completeness_error / np.maximum(difference, 1.0)))
    assert errors[1] < 0.02  # Stated tolerance: 2 % of |f - f(0)| at 64 steps.
    assert errors[1] < errors[0]


def test_both_methods_and_every_pair_of_a_length_bucket_share_one_program():
    # Source and target are padded to one bucket and the rows run in chunks
    # of a fixed size: the number of compiled programs is the number of
    # buckets used, whatever the method, the steps or the sentence.
    translator = Translator.load(TINY)
    pairs = [(SOURCE, TARGET), ("Where?", "¿Dónde?"), ("Hello.", "Hola.")]
    buckets = set()
    for source, target in pairs:
        for method, steps in (("grad_x_input", 16), ("integrated_gradients", 4)):
            a = translator.attribute(source, target, method=method, steps=steps)
            longest = max(len(a.source_tokens), len(a.target_tokens))
            buckets.add(next(b for b in (8, 16, 32, 64) if b >= longest))
    assert translator.compiled_programs == len(buckets)


def test_attribution_of_the_models_own_translation_and_bad_arguments(translator):
    own = translator.attribute(SOURCE, method="grad_x_input")
    assert own.target_tokens == translator.translate(SOURCE).target_tokens
    with pytest.raises(ValueError, match="method"):
        translator.attribute(SOURCE, TARGET, method="saliency")
    with pytest.raises(ValueError, match="steps"):
        translator.attribute(SOURCE, TARGET, steps=0)
    with pytest.raises(ValueError, match="empty"):
        translator.attribute("  ", TARGET)


@pytest.mark.slow
@pytest.mark.cross_backend
def test_tensorflow_and_jax_attribute_alike(translator):
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    here = translator.attribute(SOURCE, TARGET, steps=8)
    script = (
        "import json; from keras_mha import Translator; "
        f"a = Translator.load({str(TINY)!r}).attribute({SOURCE!r}, {TARGET!r}, "
        "steps=8); print(json.dumps([a.source.tolist(), a.target.tolist()]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, KERAS_BACKEND=other),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    source, target = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(here.source, source, atol=1e-4)
    np.testing.assert_allclose(here.target, target, atol=1e-4)


# ------------------------------------------------------------ logit lens
def test_the_last_layers_prediction_is_the_models_distribution(translator):
    scored = translator.score(SOURCE, TARGET, top_k=3, layer_predictions=3)
    layers = scored.layer_predictions
    assert len(layers) == translator.model.num_decoder_layers
    assert all(len(steps) == len(scored.target_tokens) for steps in layers)
    for lens, alternatives in zip(layers[-1], scored.alternatives):
        assert [p for p, _ in lens] == [p for p, _ in alternatives]
        np.testing.assert_allclose(
            [q for _, q in lens], [q for _, q in alternatives], rtol=1e-5
        )
    for steps in layers:  # Each layer's k pieces, most probable first.
        for step in steps:
            assert [q for _, q in step] == sorted((q for _, q in step), reverse=True)


def test_translate_records_layer_predictions_of_its_output(translator):
    t = translator.translate(SOURCE, top_k=2, layer_predictions=2)
    assert len(t.layer_predictions) == translator.model.num_decoder_layers
    assert [s[0][0] for s in t.layer_predictions[-1]] == t.target_tokens
    assert translator.translate(SOURCE).layer_predictions == []
