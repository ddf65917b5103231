"""Head importance by ablation, and scoring with heads switched off."""

import pathlib

import numpy as np
import pytest

from keras_mha import Translator
from keras_mha.head_importance import head_importance

TINY = pathlib.Path(__file__).parent / "fixtures" / "models" / "en-es-tiny"
SOURCE = "Where is the station?"


@pytest.fixture(scope="module")
def translator():
    return Translator.load(TINY)


def test_scoring_with_a_head_off_reproduces_the_ablated_decoding(translator):
    disabled = {"cross": [(0, 1)], "encoder": [(1, 0)]}
    decoded = translator.translate(SOURCE, max_length=10, disabled_heads=disabled)
    scored = translator.score(SOURCE, decoded.target_tokens, disabled_heads=disabled)
    n = len(decoded.target_tokens)
    np.testing.assert_allclose(scored.token_probs[:n], decoded.token_probs, atol=1e-5)
    plain = translator.score(SOURCE, decoded.target_tokens)
    assert not np.allclose(plain.token_probs[:n], scored.token_probs[:n])


def test_importance_is_the_score_drop_of_each_head_switched_off(translator):
    target = "¿Dónde está la estación?"
    drops = head_importance(translator, SOURCE, target)
    model = translator.model
    assert drops["encoder"].shape == (model.num_encoder_layers, model.num_heads)
    assert drops["decoder"].shape == (model.num_decoder_layers, model.num_heads)
    assert drops["cross"].shape == (model.num_decoder_layers, model.num_heads)
    full = translator.score(SOURCE, target).score
    assert np.isclose(drops["score"], full, atol=1e-4)
    for kind, layer, head in (("encoder", 0, 1), ("cross", 1, 0), ("decoder", 1, 1)):
        off = translator.score(SOURCE, target, disabled_heads={kind: [(layer, head)]})
        assert np.isclose(drops[kind][layer, head], full - off.score, atol=1e-4)
    # Every head changes something in this model.
    assert all(np.all(drops[k] != 0) for k in ("encoder", "decoder", "cross"))


def test_importance_of_the_models_own_translation(translator):
    own = translator.translate(SOURCE).target_tokens  # Cut: no end piece.
    own = own[: translator.model.max_length - 1]
    drops = head_importance(translator, SOURCE)
    assert np.isclose(drops["score"], translator.score(SOURCE, own).score, atol=1e-4)
