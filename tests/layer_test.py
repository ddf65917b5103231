"""A shared layer-test helper, modelled on keras-hub's `run_layer_test`.

Not a test module itself: test modules call `run_layer_test` with a layer
class, its constructor arguments and a little input data, and it checks the
contract every `keras_mha` layer keeps (STYLE.md, "Layers"):

1. config round trip: `from_config(get_config())` gives the same, JSON-able
   config;
2. `keras.saving.serialize_keras_object` / `deserialize_keras_object`;
3. build from shapes (`build(<call_arg>_shape=...)`) builds the layer and
   every sublayer;
4. a symbolic call on `keras.KerasTensor`s (`compute_output_spec`);
5. an eager call;
6. one compiled training step (`Model.fit`) that changes the weights.
"""

import inspect
import json

import keras
import numpy as np
from keras import ops


def to_numpy(x):
    """A NumPy copy of a tensor or a `keras.Variable`."""
    if isinstance(x, keras.Variable):
        x = ops.copy(x)  # NumPy 2 warns on `np.array(tf.Variable)`.
    return ops.convert_to_numpy(x)


def _shapes(outputs):
    """Output shape(s) as tuples of ints, one per output."""
    if isinstance(outputs, (tuple, list)):
        return tuple(tuple(x.shape) for x in outputs)
    return tuple(outputs.shape)


def _call(layer, input_data, call_kwargs):
    if isinstance(input_data, dict):
        return layer(**input_data, **call_kwargs)
    return layer(input_data, **call_kwargs)


def _sublayers(layer):
    return [v for v in vars(layer).values() if isinstance(v, keras.layers.Layer)]


def check_config_round_trip(layer):
    """`from_config(get_config())` and (de)serialization keep the config."""
    config = layer.get_config()
    json.dumps(config)  # Nothing non-JSON in a config.
    clone = type(layer).from_config(config)
    assert clone.get_config() == config

    serialized = keras.saving.serialize_keras_object(layer)
    json.dumps(serialized)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(layer)
    assert restored.get_config() == config


class LayerModel(keras.Model):
    """A tiny model around one layer; trains on the layer's first output."""

    def __init__(self, layer, call_kwargs):
        super().__init__()
        self.layer = layer
        self.call_kwargs = call_kwargs

    def call(self, inputs):
        outputs = _call(self.layer, inputs, self.call_kwargs)
        return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    call_kwargs=None,
    expected_num_trainable_weights=None,
    run_symbolic_check=True,
    run_training_check=True,
    allow_unchanged_weights=(),
):
    """Runs the checks listed in the module docstring.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict of constructor arguments.
        input_data: a NumPy array (the first call argument) or a dict of
            arrays keyed by call argument names.
        expected_output_shape: a shape tuple, or a tuple of shapes when the
            call returns several tensors.
        call_kwargs: non-tensor keyword arguments of every call, e.g.
            `{"return_attention_scores": True}`.
        expected_num_trainable_weights: optional int.
        run_symbolic_check: call the layer on `keras.KerasTensor`s.
        run_training_check: fit one step and check that the weights moved.
        allow_unchanged_weights: substrings of weight paths whose gradient is
            zero by construction (a key bias shifts every score of a row by
            the same amount, which the softmax ignores).
    """
    call_kwargs = dict(call_kwargs or {})
    data = input_data if isinstance(input_data, dict) else {None: input_data}

    # Config and serialization.
    layer = layer_cls(**init_kwargs)
    check_config_round_trip(layer)

    # Build from shapes.
    build_args = inspect.signature(layer.build).parameters
    if isinstance(input_data, dict):
        shapes = {
            f"{name}_shape": value.shape
            for name, value in input_data.items()
            if f"{name}_shape" in build_args
        }
        layer.build(**shapes)
    else:
        layer.build(input_data.shape)
    assert layer.built
    for sublayer in _sublayers(layer):
        assert sublayer.built, f"sublayer {sublayer.name} is not built"
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    check_config_round_trip(layer)

    # Symbolic call.
    if run_symbolic_check:
        symbolic = {
            name: keras.KerasTensor(value.shape, dtype=str(value.dtype))
            for name, value in data.items()
        }
        symbolic = symbolic if isinstance(input_data, dict) else symbolic[None]
        outputs = _call(layer_cls(**init_kwargs), symbolic, call_kwargs)
        assert _shapes(outputs) == expected_output_shape

    # Eager call.
    layer = layer_cls(**init_kwargs)
    outputs = _call(layer, input_data, call_kwargs)
    assert _shapes(outputs) == expected_output_shape
    for output in outputs if isinstance(outputs, (tuple, list)) else [outputs]:
        assert keras.backend.standardize_dtype(output.dtype) == layer.compute_dtype
        assert np.all(np.isfinite(to_numpy(output)))

    # One compiled training step.
    if run_training_check:
        model = LayerModel(layer, call_kwargs)
        first_output = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        rng = np.random.default_rng(0)
        target = to_numpy(first_output)
        target = target + rng.normal(size=target.shape).astype(target.dtype)
        before = [to_numpy(w) for w in layer.trainable_weights]
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        batch_size = len(target)
        history = model.fit(
            input_data, target, batch_size=batch_size, epochs=1, verbose=0
        )
        assert np.isfinite(history.history["loss"][0])
        for weight, old in zip(layer.trainable_weights, before):
            new = to_numpy(weight)
            assert np.all(np.isfinite(new)), weight.path
            if any(part in weight.path for part in allow_unchanged_weights):
                continue
            assert not np.array_equal(old, new), f"{weight.path} did not train"
