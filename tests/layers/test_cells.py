"""The cells (layers/cells.py) inside keras.layers.RNN, StackedRNNCells and Bidirectional: equal
to Keras' cells and to our fused layers given the same weights; per-sequence perturbations drawn
before the loop through Keras' dropout-mask hook; the restrictions raise."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_rnnreg import layers as L
from keras_rnnreg.perturbations import DropConnect, WeightNoise
from keras_rnnreg.regularizers import NormStabilizer
from tests.conftest import to_numpy, tolerance
from tests.gradients import value_and_grads
from tests.layers.harness import run_layer_test

B, T, F, N = 3, 6, 5, 4
TRIPLES = {  # ours, Keras' cell, our fused layer
    "simple_rnn": (L.SimpleRNNCell, keras.layers.SimpleRNNCell, L.SimpleRNN),
    "lstm": (L.LSTMCell, keras.layers.LSTMCell, L.LSTM),
    "gru": (L.GRUCell, keras.layers.GRUCell, L.GRU),
}


def _inputs(seed=0):
    return np.random.default_rng(seed).normal(size=(B, T, F)).astype("float32")


def _mask(kind):
    if kind is None:
        return None
    mask = np.ones((B, T), dtype=bool)
    if kind == "right":
        mask[0, 4:] = False
        mask[1, 2:] = False
    else:
        mask[0, :2] = False
        mask[2, :5] = False
    return ops.convert_to_tensor(mask)


def _built(layer, x, weights=None):
    layer(x)
    if weights is not None:
        layer.set_weights(weights)
    return layer


def _assert_same(a, b, x, **kwargs):
    out_a, grads_a = value_and_grads(a, x, **kwargs)
    out_b, grads_b = value_and_grads(b, x, **kwargs)
    np.testing.assert_allclose(out_a, out_b, **tolerance())
    assert len(grads_a) == len(grads_b)
    for g_a, g_b in zip(grads_a, grads_b):
        np.testing.assert_allclose(g_a, g_b, **tolerance())


@pytest.mark.parametrize("name", sorted(TRIPLES))
@pytest.mark.parametrize("mask_kind", [None, "left"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_rnn_of_our_cell_equals_keras_cell_and_our_layer(name, mask_kind, go_backwards):
    ours_cell, keras_cell, fused = TRIPLES[name]
    x = _inputs()
    kw = {"return_sequences": True, "return_state": True, "go_backwards": go_backwards}
    theirs = _built(keras.layers.RNN(keras_cell(N), **kw), x)
    weights = theirs.get_weights()
    ours = _built(keras.layers.RNN(ours_cell(N), **kw), x, weights)
    layer = _built(fused(N, zero_output_for_mask=False, **kw), x, weights)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    mask = _mask(mask_kind)
    _assert_same(ours, theirs, x, mask=mask)
    _assert_same(ours, layer, x, mask=mask)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("gru", {"reset_after": False}),
        ("gru", {"use_bias": False}),
        ("lstm", {"unit_forget_bias": False, "recurrent_activation": "hard_sigmoid"}),
        ("simple_rnn", {"activation": "relu"}),
    ],
)
def test_cell_options_equal_keras(name, kwargs):
    ours_cell, keras_cell, _ = TRIPLES[name]
    x = _inputs()
    theirs = _built(keras.layers.RNN(keras_cell(N, **kwargs), return_sequences=True), x)
    ours = _built(keras.layers.RNN(ours_cell(N, **kwargs), return_sequences=True), x,
                  theirs.get_weights())
    _assert_same(ours, theirs, x, mask=_mask("right"))


def test_lstm_cell_without_output_tanh_equals_our_layer():
    x = _inputs()
    layer = _built(L.LSTM(N, output_activation=None, return_sequences=True), x)
    cell = _built(keras.layers.RNN(L.LSTMCell(N, output_activation=None), return_sequences=True),
                  x, layer.get_weights())
    _assert_same(cell, layer, x)


def test_stacked_cells_equal_keras():
    x = _inputs()
    theirs = _built(keras.layers.RNN(keras.layers.StackedRNNCells(
        [keras.layers.LSTMCell(N), keras.layers.GRUCell(3), keras.layers.SimpleRNNCell(2)]),
        return_sequences=True, return_state=True), x)
    ours = _built(keras.layers.RNN(keras.layers.StackedRNNCells(
        [L.LSTMCell(N), L.GRUCell(3), L.SimpleRNNCell(2)]),
        return_sequences=True, return_state=True), x, theirs.get_weights())
    _assert_same(ours, theirs, x, mask=_mask("left"))


@pytest.mark.parametrize("name", sorted(TRIPLES))
def test_bidirectional_equals_keras(name):
    ours_cell, keras_cell, _ = TRIPLES[name]
    x = _inputs()
    theirs = _built(keras.layers.Bidirectional(keras.layers.RNN(keras_cell(N),
                                                                return_sequences=True)), x)
    ours = _built(keras.layers.Bidirectional(keras.layers.RNN(ours_cell(N),
                                                              return_sequences=True)), x,
                  theirs.get_weights())
    _assert_same(ours, theirs, x, mask=_mask("right"))


@pytest.mark.parametrize("name", sorted(TRIPLES))
@pytest.mark.parametrize(
    "perturbation",
    [DropConnect(0.5, per="sequence"), WeightNoise(0.3, per="sequence", target="both")],
    ids=repr,
)
def test_per_sequence_perturbations_are_one_draw_before_the_loop(name, perturbation, monkeypatch):
    """Training output equals the clean cell given the kernels drawn (recorded by wrapping
    ``perturb``): one draw per call, shared by all steps; inference uses the clean weights."""
    ours_cell, _, _ = TRIPLES[name]
    drawn = []
    original = type(perturbation).perturb

    def recording(self, weight, time_steps, seed_generator):
        assert time_steps is None  # per sequence
        out = original(self, weight, time_steps, seed_generator)
        drawn.append(out)
        return out

    monkeypatch.setattr(type(perturbation), "perturb", recording)
    x = _inputs()
    noisy = _built(keras.layers.RNN(ours_cell(N, perturbations=[perturbation], seed=3),
                                    return_sequences=True), x)
    clean = _built(keras.layers.RNN(ours_cell(N), return_sequences=True), x, noisy.get_weights())
    np.testing.assert_allclose(to_numpy(noisy(x)), to_numpy(clean(x)), atol=1e-6)
    drawn.clear()
    out = to_numpy(noisy(x, training=True))
    targets = 2 if perturbation.target == "both" else 1
    assert len(drawn) == targets
    kernel, recurrent_kernel, *bias = noisy.get_weights()
    if perturbation.target == "both":
        kernel = to_numpy(drawn[0])
    perturbed = _built(keras.layers.RNN(ours_cell(N), return_sequences=True), x,
                       [kernel, to_numpy(drawn[-1]), *bias])
    np.testing.assert_allclose(out, to_numpy(perturbed(x)), atol=1e-5)
    assert np.abs(out - to_numpy(clean(x))).max() > 1e-3
    assert noisy.cell._perturbed is None  # discarded after the call (reset_dropout_mask)


@pytest.mark.parametrize("name", sorted(TRIPLES))
def test_model_with_perturbed_cells_fits(name):
    """Compiled training (jit on JAX: the draws happen outside the scan), stacked and
    bidirectional, with dropout."""
    ours_cell, _, _ = TRIPLES[name]
    pert = [DropConnect(0.3, per="sequence")]
    model = keras.Sequential([
        keras.Input((T, F)),
        keras.layers.Bidirectional(keras.layers.RNN(keras.layers.StackedRNNCells(
            [ours_cell(N, perturbations=pert, dropout=0.2, recurrent_dropout=0.2),
             ours_cell(N, perturbations=pert)]), return_sequences=True)),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    x = _inputs()
    y = np.ones((B, T, 1), dtype="float32")
    before = model.get_weights()
    history = model.fit(x, y, epochs=2, batch_size=B, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("name", sorted(TRIPLES))
def test_inference_uses_the_perturbations_deterministic_weights(name):
    """DropConnect(scale="inference") runs (1 - rate) W outside training, in a cell as in the
    fused layer; weight noise leaves the clean W."""
    ours_cell, _, fused = TRIPLES[name]
    pert = [DropConnect(0.4, per="sequence", scale="inference", target="both"),
            WeightNoise(0.3, per="sequence")]
    x = _inputs()
    layer = _built(fused(N, return_sequences=True, perturbations=pert), x)
    rnn = _built(keras.layers.RNN(ours_cell(N, perturbations=pert), return_sequences=True), x,
                 layer.get_weights())
    np.testing.assert_allclose(to_numpy(rnn(x)), to_numpy(layer(x)), **tolerance())
    clean = _built(fused(N, return_sequences=True), x, layer.get_weights())
    assert not np.allclose(to_numpy(rnn(x)), to_numpy(clean(x)), atol=1e-4)


def test_norm_stabilizer_on_the_output_equals_the_layers_state_regularizer():
    x = _inputs()
    mask = _mask("left")
    layer = _built(L.LSTM(N, return_sequences=True, state_regularizer=NormStabilizer(20.0)), x)
    rnn = _built(keras.layers.RNN(L.LSTMCell(N), return_sequences=True), x, layer.get_weights())
    layer(x, mask=mask)
    stabilizer = NormStabilizer(20.0)
    stabilizer(rnn(x, mask=mask), mask=mask)
    np.testing.assert_allclose(to_numpy(stabilizer.losses[0]), to_numpy(layer.losses[-1]),
                               rtol=1e-5)


@pytest.mark.parametrize("name", sorted(TRIPLES))
def test_restrictions_raise(name):
    ours_cell = TRIPLES[name][0]
    with pytest.raises(ValueError, match="per timestep"):
        ours_cell(N, perturbations=[DropConnect(0.5)])
    with pytest.raises(ValueError, match="per timestep"):
        ours_cell(N, perturbations=[WeightNoise(0.1, sampling="local")])
    with pytest.raises(ValueError, match="NormStabilizer on the RNN's output"):
        ours_cell(N, state_regularizer=NormStabilizer(1.0))
    with pytest.raises(ValueError, match="takes no zoneout.*use the layers"):
        ours_cell(N, zoneout=0.1)
    with pytest.raises(ValueError, match="units"):
        ours_cell(0)
    with pytest.raises(ValueError, match="recurrent_dropout"):
        ours_cell(N, recurrent_dropout=1.0)


@pytest.mark.parametrize("name", sorted(TRIPLES))
def test_layer_harness(name, tmp_path):
    """Our cells in keras.layers.RNN, with per-sequence perturbations and dropout."""
    ours_cell = TRIPLES[name][0]

    def make():
        cell = ours_cell(N, perturbations=[DropConnect(0.2, per="sequence")], dropout=0.1,
                         kernel_regularizer="l2")
        return keras.layers.RNN(cell, return_sequences=True)

    run_layer_test(make, tmp_path, expected_num_losses=1)


def test_cell_in_a_hand_written_loop():
    """The cell API by hand: state list in, (output, new states) out, as Keras' cells."""
    cell = L.GRUCell(N)
    kcell = keras.layers.GRUCell(N)
    x = _inputs()
    kcell.build((B, F))
    cell.build((B, F))
    cell.set_weights(kcell.get_weights())
    h_ours = cell.get_initial_state(B)
    h_theirs = kcell.get_initial_state(B)
    for t in range(T):
        out_ours, h_ours = cell(x[:, t], h_ours)
        out_theirs, h_theirs = kcell(x[:, t], h_theirs)
    np.testing.assert_allclose(to_numpy(out_ours), to_numpy(out_theirs), **tolerance())
    assert cell.state_size == kcell.state_size and cell.output_size == kcell.output_size
