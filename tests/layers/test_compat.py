"""keras_rnnreg.layers.SimpleRNN / LSTM / GRU against keras.layers.SimpleRNN / LSTM / GRU: same
weights, same outputs and gradients (within 1e-5 on CPU; on a GPU within TF32 rounding where one
side is a cuDNN kernel, see tests.conftest.tolerance), masks, go_backwards, Bidirectional,
return_state."""

import inspect

import keras
import numpy as np
import pytest

import keras_rnnreg
from tests.conftest import to_numpy, tolerance
from tests.gradients import value_and_grads

L = keras_rnnreg.layers
PAIRS = {
    "simple_rnn": (L.SimpleRNN, keras.layers.SimpleRNN),
    "lstm": (L.LSTM, keras.layers.LSTM),
    "gru": (L.GRU, keras.layers.GRU),
}
CUDNN = ("lstm", "gru")  # layers that may run a cuDNN kernel on a GPU (wider tolerance there)


def _inputs(batch=3, time=6, features=5, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, time, features)).astype("float32")


def _mask(kind, batch=3, time=6):
    if kind is None:
        return None
    mask = np.ones((batch, time), dtype=bool)
    if kind == "right":
        mask[0, 4:] = False
        mask[1, 2:] = False
    else:  # left-padded
        mask[0, :2] = False
        mask[2, :5] = False
    return mask


def _pair(name, **kwargs):
    ours_cls, keras_cls = PAIRS[name]
    x = _inputs()
    theirs = keras_cls(4, **kwargs)
    ours = ours_cls(4, **kwargs)
    theirs(x)
    ours(x)
    ours.set_weights(theirs.get_weights())
    return ours, theirs, x


def _mask_arg(mask):
    return None if mask is None else keras.ops.convert_to_tensor(mask)


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("mask_kind", [None, "left", "right"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_outputs_and_gradients_match_keras(name, return_sequences, mask_kind, go_backwards):
    ours, theirs, x = _pair(
        name,
        return_sequences=return_sequences,
        return_state=True,
        go_backwards=go_backwards,
        # Keras zeroes masked outputs only when asked (Bidirectional asks); ours always does.
        zero_output_for_mask=return_sequences,
    )
    mask = _mask_arg(_mask(mask_kind))
    out_ours, grads_ours = value_and_grads(ours, x, mask=mask)
    out_theirs, grads_theirs = value_and_grads(theirs, x, mask=mask)
    np.testing.assert_allclose(out_ours, out_theirs, **tolerance(cudnn=name in CUDNN))
    assert len(grads_ours) == len(grads_theirs) == 3
    for g_ours, g_theirs in zip(grads_ours, grads_theirs):
        np.testing.assert_allclose(g_ours, g_theirs, **tolerance(cudnn=name in CUDNN))


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("simple_rnn", {"activation": "relu"}),
        ("simple_rnn", {"activation": "sigmoid"}),
        ("simple_rnn", {"activation": "softsign"}),  # not fusable: autodiff path
        ("lstm", {"activation": "relu"}),
        ("lstm", {"recurrent_activation": "hard_sigmoid"}),  # autodiff path
        ("gru", {"reset_after": False}),
        ("gru", {"reset_after": False, "use_bias": False}),
        ("gru", {"use_bias": False}),
        ("gru", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
    ],
)
def test_other_activations_match_keras(name, kwargs):
    ours, theirs, x = _pair(name, return_sequences=True, zero_output_for_mask=True, **kwargs)
    mask = _mask_arg(_mask("right"))
    out_ours, grads_ours = value_and_grads(ours, x, mask=mask)
    out_theirs, grads_theirs = value_and_grads(theirs, x, mask=mask)
    np.testing.assert_allclose(out_ours, out_theirs, **tolerance())
    for g_ours, g_theirs in zip(grads_ours, grads_theirs):
        np.testing.assert_allclose(g_ours, g_theirs, **tolerance())


@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_masked_steps_keep_state(zero_output_for_mask):
    """Keras' default repeats the previous output at a masked step (zeros before the first valid
    one); zero_output_for_mask=True outputs zeros. The state is carried either way."""
    layer = L.SimpleRNN(4, return_sequences=True, return_state=True,
                        zero_output_for_mask=zero_output_for_mask)
    x = _inputs()
    mask = _mask("right")
    mask[2, :2] = False  # and a row with left padding
    seq, last = layer(x, mask=_mask_arg(mask))
    seq = to_numpy(seq)
    assert np.all(seq[2, :2] == 0.0)
    if zero_output_for_mask:
        assert np.all(seq[~mask] == 0.0)
    else:
        np.testing.assert_array_equal(seq[0, 4:], np.repeat(seq[0, 3:4], 2, axis=0))
        np.testing.assert_array_equal(seq[1, 2:], np.repeat(seq[1, 1:2], 4, axis=0))
    # Left padding: the state at the first valid step is computed from a zero state.
    alone = to_numpy(layer(x[2:3, 2:])[1])
    np.testing.assert_allclose(to_numpy(last)[2], alone[0], **tolerance(1e-6))


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_defaults_and_argument_order_are_keras(name):
    """Every entry of Keras' config has Keras' default value in ours; Keras' arguments come in
    Keras' order, ours after them (keyword-only)."""
    ours_cls, keras_cls = PAIRS[name]
    theirs = keras_cls(4).get_config()
    ours = ours_cls(4).get_config()
    for key, value in theirs.items():
        if key != "name":
            assert ours[key] == value, key
    keras_args = [p for p in inspect.signature(keras_cls).parameters.values()
                  if p.kind == p.POSITIONAL_OR_KEYWORD]
    our_args = [p for p in inspect.signature(ours_cls).parameters.values()
                if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert [(p.name, p.default) for p in our_args] == [(p.name, p.default) for p in keras_args]


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_matches_keras(name, merge_mode):
    ours_cls, keras_cls = PAIRS[name]
    x = _inputs()
    mask = _mask_arg(_mask("right"))
    theirs = keras.layers.Bidirectional(keras_cls(4, return_sequences=True), merge_mode=merge_mode)
    ours = keras.layers.Bidirectional(ours_cls(4, return_sequences=True), merge_mode=merge_mode)
    theirs(x)
    ours(x)
    ours.set_weights(theirs.get_weights())
    out_ours, grads_ours = value_and_grads(ours, x, mask=mask)
    out_theirs, grads_theirs = value_and_grads(theirs, x, mask=mask)
    np.testing.assert_allclose(out_ours, out_theirs, **tolerance(cudnn=name in CUDNN))
    for g_ours, g_theirs in zip(grads_ours, grads_theirs):
        np.testing.assert_allclose(g_ours, g_theirs, **tolerance(cudnn=name in CUDNN))


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_initial_state_matches_keras(name):
    ours, theirs, x = _pair(name, return_sequences=True, return_state=True)
    n_states = len(ours.state_size)
    states = [np.full((3, 4), 0.3 * (i + 1), dtype="float32") for i in range(n_states)]
    out_ours = ours(x, initial_state=states)
    out_theirs = theirs(x, initial_state=states)
    for a, b in zip(out_ours, out_theirs):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), **tolerance(cudnn=name in CUDNN))


def test_weight_names_and_shapes_match_keras():
    for name in PAIRS:
        ours, theirs, _ = _pair(name)
        assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
        assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]


def test_in_sequential_model_with_masking_layer():
    x = _inputs()
    x[0, :2] = 0.0
    model = keras.Sequential(
        [keras.Input((6, 5)), keras.layers.Masking(0.0), L.LSTM(4, return_sequences=True)]
    )
    out = to_numpy(model(x))
    assert np.all(out[0, :2] == 0.0)
    assert np.all(out[0, 2:] != 0.0)
