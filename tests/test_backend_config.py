"""The backend speed switches: one place, measured backends only."""

import ast
import pathlib

import keras

from keras_mha import backend_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
SWITCHES = ("FUSED_ATTENTION", "MATMUL_PROJECTIONS", "TIED_LOGITS_GRADIENT")
MEASURED = {"tensorflow", "jax"}
LAYER_MODULES = (
    "multi_head_attention",
    "masks",
    "embedding",
    "feed_forward",
    "encoder",
    "decoder",
    "transformer_layer",
    "transformer",
)


def test_switches_name_only_measured_backends():
    for name in SWITCHES:
        switch = getattr(backend_config, name)
        assert isinstance(switch, tuple) and set(switch) <= MEASURED, name


def test_uses_asks_about_the_current_backend():
    backend = keras.backend.backend()
    assert backend_config.uses((backend,))
    assert not backend_config.uses(tuple(MEASURED - {backend}))
    assert backend_config.uses(backend_config.FUSED_ATTENTION) == (backend == "jax")
    assert backend_config.uses(backend_config.MATMUL_PROJECTIONS) == (
        backend == "tensorflow"
    )


def test_layers_name_no_backend_themselves():
    """The layers take backend choices from `backend_config` only."""
    for module in LAYER_MODULES:
        path = ROOT / "keras_mha" / f"{module}.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in MEASURED | {"torch"}:
                raise AssertionError(f"{path.name}:{node.lineno}: {node.value!r}")
