"""The checks every layer of keras_rnnreg.layers passes, in one place (after Keras' own
``testing.TestCase.run_layer_test``): each layer's test module calls :func:`run_layer_test` with
its configurations.

* output shapes: ``compute_output_shape`` (a symbolic call) agrees with an eager call;
* config round trip: ``from_config(get_config())`` has the same config and, given the weights, the
  same outputs;
* ``.keras`` save and reload: the same class, config and outputs;
* masking: the layer supports masks; a left-padded row gives at its valid steps what the unpadded
  row gives (states carried over masked steps, as Keras' RNN), and the output mask is the input
  mask where the output keeps the time axis;
* losses counted: after a training call ``layer.losses`` holds ``expected_num_losses`` finite
  tensors, as many in a model, not accumulating over calls;
* mixed precision: under ``mixed_float16`` and ``mixed_bfloat16`` the layer builds with float32
  variables, runs (inference and training) with finite outputs in the compute dtype, and infers
  what float32 does within the compute dtype's precision (3e-2 absolute and relative).
"""

import copy
import json
import os

import keras
import numpy as np

from tests.conftest import to_numpy

B, T, F = 3, 6, 4
POLICIES = ("mixed_float16", "mixed_bfloat16")


def inputs(shape=(B, T, F), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _flat(outputs):
    return [to_numpy(o) for o in keras.tree.flatten(outputs)]


def _assert_close(actual, expected, atol=1e-6, **kwargs):
    actual, expected = _flat(actual), _flat(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a.astype("float32"), e, atol=atol, **kwargs)


def run_layer_test(
    make,
    tmp_path,
    *,
    input_shape=(B, T, F),
    expected_num_losses=0,
    recurrent=True,
    mixed_precision=True,
):
    """Run every check on the layer ``make()`` builds (a fresh one each time it is called).

    Args:
        make: a function returning a new, unbuilt layer of the configuration under test.
        tmp_path: a folder for the ``.keras`` file (pytest's ``tmp_path``).
        input_shape: (batch, time, features) inputs; the layer takes one tensor.
        expected_num_losses: how many entries ``layer.losses`` has after a training call
            (weight regularizers, state regularizer, activity regularizer).
        recurrent: whether the layer runs over the time axis (masking checks the state carry);
            False for a per-timestep layer (FastDropoutDense), whose outputs only pass the mask on.
        mixed_precision: run the mixed-precision checks.
    """
    x = inputs(input_shape)
    layer = make()
    expected = layer(x)
    weights = layer.get_weights()
    _check_output_shapes(make, weights, x, expected)
    _check_config_round_trip(layer, weights, x, expected)
    _check_save_and_reload(layer, x, expected, tmp_path)
    _check_masking(make, weights, x, recurrent)
    _check_losses(make, x, expected_num_losses)
    if mixed_precision:
        _check_mixed_precision(make, weights, x, expected)


def _model(layer, shape):
    inputs = keras.Input(shape[1:])
    return keras.Model(inputs, layer(inputs))


def _check_output_shapes(make, weights, x, expected):
    symbolic = keras.tree.flatten(_model(make(), (None, None, x.shape[-1])).outputs)
    for tensor, value in zip(symbolic, keras.tree.flatten(expected)):
        assert len(tensor.shape) == len(value.shape)
        assert all(s is None or s == v for s, v in zip(tensor.shape, value.shape))


def _check_config_round_trip(layer, weights, x, expected):
    config = layer.get_config()
    clone = type(layer).from_config(copy.deepcopy(config))  # keras.layers.RNN pops "cell"
    assert clone.get_config() == config
    clone.build(x.shape)
    clone.set_weights(weights)
    _assert_close(clone(x), expected)


def _check_save_and_reload(layer, x, expected, tmp_path):
    model = _model(layer, x.shape)
    path = os.path.join(tmp_path, f"{layer.name}.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    again = restored.layers[-1]
    assert type(again) is type(layer)
    # As JSON: a reloaded build_config holds lists where the original holds tuples.
    assert json.dumps(again.get_config()) == json.dumps(layer.get_config())
    _assert_close(restored(x), expected)


def _check_masking(make, weights, x, recurrent):
    layer = make()
    layer.build(x.shape)
    layer.set_weights(weights)
    assert layer.supports_masking
    pad = 2
    mask = np.ones(x.shape[:2], bool)
    mask[0, :pad] = False
    padded = x.copy()
    padded[0, :pad] = 0.0
    # A per-timestep layer takes no mask in call (Keras hands it none); it passes it on.
    call_mask = {"mask": keras.ops.convert_to_tensor(mask)} if recurrent else {}
    outputs = _flat(layer(padded, **call_mask))
    unpadded = _flat(layer(x[:1, pad:]))
    masks = layer.compute_mask(padded, keras.ops.convert_to_tensor(mask))
    masks = masks if isinstance(masks, (list, tuple)) else [masks]
    # go_backwards: outputs in processing order, the padding comes last.
    backwards = getattr(layer, "go_backwards", False)
    valid = slice(None, x.shape[1] - pad) if backwards else slice(pad, None)
    for out, ref, out_mask in zip(outputs, unpadded, masks):
        if out.ndim == 3:  # a sequence: the valid steps of row 0 (and every row's mask)
            np.testing.assert_allclose(out[0, valid], ref[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(to_numpy(out_mask), mask)
        elif recurrent:  # the last output or state
            np.testing.assert_allclose(out[0], ref[0], rtol=1e-5, atol=1e-6)
            assert out_mask is None


def _check_losses(make, x, expected_num_losses):
    model = _model(make(), x.shape)
    layer = model.layers[-1]
    for _ in range(2):  # a second call replaces the losses of the first
        model(x, training=True)
        assert len(layer.losses) == len(model.losses) == expected_num_losses
    assert all(np.isfinite(to_numpy(loss)) for loss in layer.losses)


def _check_mixed_precision(make, weights, x, expected):
    for policy in POLICIES:
        keras.config.set_dtype_policy(policy)
        try:
            layer = make()
            layer.build(x.shape)
            layer.set_weights(weights)
            compute_dtype = policy.split("_")[1]
            assert all(
                keras.backend.standardize_dtype(w.dtype) == "float32" for w in layer.weights
            )
            inferred = keras.tree.flatten(layer(x))
            for out in inferred + keras.tree.flatten(layer(x, training=True)):
                assert keras.backend.standardize_dtype(out.dtype) == compute_dtype
                assert np.all(np.isfinite(to_numpy(keras.ops.cast(out, "float32"))))
            _assert_close(inferred, expected, atol=3e-2, rtol=3e-2)
        finally:
            keras.config.set_dtype_policy("float32")
