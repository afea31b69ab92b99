"""Behaviour beyond Keras: relu/trec, the LSTM without output tanh, the cell sequence, argument
checking, the fused backward pass; SimpleRNN, LSTM and Bidirectional through the layer harness
(serialization, masking, losses, mixed precision: harness.py)."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_rnnreg
from keras_rnnreg.perturbations import DropConnect
from keras_rnnreg.regularizers import NormStabilizer
from tests.conftest import to_numpy, tolerance
from tests.gradients import value_and_grads
from tests.layers.harness import run_layer_test

L = keras_rnnreg.layers


def _x(batch=2, time=5, features=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, time, features)).astype("float32")


def _np_lstm(x, kernel, recurrent, bias, output_tanh=True):
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros((x.shape[0], units))
    hs, cs = [], []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * (np.tanh(c) if output_tanh else c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs, 1), np.stack(cs, 1)


@pytest.mark.parametrize("output_activation", ["same", None])
def test_lstm_against_numpy_with_cell_sequence(output_activation):
    x = _x()
    layer = L.LSTM(
        4, return_sequences=True, return_cell_sequence=True, output_activation=output_activation,
        bias_initializer="random_normal",
    )
    hs, cs = layer(x)
    kernel, recurrent, bias = (to_numpy(w) for w in layer.weights)
    ref_h, ref_c = _np_lstm(x, kernel, recurrent, bias, output_tanh=output_activation == "same")
    np.testing.assert_allclose(to_numpy(hs), ref_h, **tolerance())
    np.testing.assert_allclose(to_numpy(cs), ref_c, **tolerance())


def test_relu_and_trec_simple_rnn():
    x = _x()
    trec = L.SimpleRNN(4, activation="trec", return_sequences=True)
    out = to_numpy(trec(x))
    assert trec.bias is None and len(trec.weights) == 2  # zero-bias: no hidden bias
    kernel, recurrent = (to_numpy(w) for w in trec.weights)
    h = np.zeros((2, 4))
    for t in range(5):
        h = np.maximum(x[:, t] @ kernel + h @ recurrent, 0.0)
        np.testing.assert_allclose(out[:, t], h, **tolerance())
    irnn = L.SimpleRNN(4, activation="relu", recurrent_initializer="identity")
    irnn(x)
    np.testing.assert_allclose(to_numpy(irnn.recurrent_kernel), np.eye(4))


def test_trec_activation_threshold():
    values = to_numpy(keras_rnnreg.activations.trec(np.array([-1.0, 0.0, 0.5, 2.0]), threshold=0.5))
    np.testing.assert_allclose(values, [0.0, 0.0, 0.0, 2.0])


@pytest.mark.parametrize(
    "make, num_losses",
    [
        (lambda: L.SimpleRNN(4, activation="trec", return_sequences=True, kernel_regularizer="l2",
                             state_regularizer=NormStabilizer(2.0)), 2),
        (lambda: L.SimpleRNN(4, activation="relu", recurrent_initializer="identity", unroll=True,
                             return_state=True, activity_regularizer="l2"), 2),  # per output
        (lambda: L.LSTM(
            7, activation="relu", recurrent_activation="sigmoid", output_activation=None,
            unit_forget_bias=False, return_cell_sequence=True, go_backwards=True, dropout=0.1,
            kernel_regularizer="l2", recurrent_constraint="non_neg", seed=3,
            state_regularizer=NormStabilizer(10.0, on="cell"), return_sequences=True), 2),
        (lambda: L.LSTM(4, return_state=True, perturbations=[DropConnect(0.3, per="sequence")],
                        use_cudnn=False), 0),
        (lambda: L.Bidirectional(L.LSTM(4, return_sequences=True,
                                         state_regularizer=NormStabilizer(1.0))), 2),
    ],
    ids=["simple_rnn-trec", "simple_rnn-irnn-state", "lstm-cells", "lstm-state", "bidirectional"],
)
def test_layer_harness(make, num_losses, tmp_path):
    run_layer_test(make, tmp_path, expected_num_losses=num_losses)


def test_fit_reduces_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 3)).astype("float32")
    y = np.cumsum(x[..., :1], axis=1) * 0.3
    model = keras.Sequential(
        [keras.Input((8, 3)), L.LSTM(16, return_sequences=True), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def test_dropout_only_in_training():
    layer = L.SimpleRNN(8, dropout=0.5, recurrent_dropout=0.5, seed=1, return_sequences=True)
    x = _x()
    a, b = to_numpy(layer(x)), to_numpy(layer(x))
    np.testing.assert_allclose(a, b)
    c, d = to_numpy(layer(x, training=True)), to_numpy(layer(x, training=True))
    assert not np.allclose(c, a) and not np.allclose(c, d)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"units": 0}, "units"),
        ({"units": -3}, "units"),
        ({"units": 2.5}, "units"),
        ({"units": 4, "activation": "no_such_activation"}, "activation"),
        ({"units": 4, "dropout": 1.0}, "dropout"),
        ({"units": 4, "unroll": 0}, "unroll"),
        ({"units": 4, "implementation": 3}, "implementation"),  # SimpleRNN: Keras' own error
    ],
)
@pytest.mark.parametrize("cls", [L.SimpleRNN, L.LSTM, L.GRU])
def test_bad_arguments_name_the_argument(cls, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        cls(**kwargs)


def test_lstm_bad_recurrent_activation():
    with pytest.raises(ValueError, match="recurrent_activation"):
        L.LSTM(3, recurrent_activation="nope")


@pytest.mark.parametrize("cls", [L.SimpleRNN, L.LSTM, L.GRU])
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4, 5)])
def test_inputs_not_rank_3(cls, shape):
    with pytest.raises(ValueError, match="rank 3"):
        cls(4)(np.zeros(shape, dtype="float32"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # fused path
        {"recurrent_dropout": 0.2},  # autodiff path
        {"activation": "softsign"},  # autodiff path
        {"perturbations": [keras_rnnreg.perturbations.WeightNoise(0.1, sampling="local")]},
    ],
    ids=["fused", "recurrent_dropout", "softsign", "local-noise"],
)
@pytest.mark.parametrize("cls", [L.SimpleRNN, L.LSTM, L.GRU])
def test_trains_under_jit_compile(cls, kwargs):
    """XLA on TensorFlow (what Keras picks by itself on a GPU), jit on JAX."""
    if keras.backend.backend() == "torch":
        pytest.skip("jit_compile=True means torch.compile on PyTorch: not this test's subject")
    x = _x(batch=8, time=5, features=3)
    model = keras.Sequential([keras.Input((5, 3)), cls(4, **kwargs), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    history = model.fit(x, np.ones((8, 1), "float32"), epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


class _VariableLength(keras.utils.PyDataset):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        time = 4 + 3 * index
        rng = np.random.default_rng(index)
        return rng.random((2, time, 3), dtype="float32"), rng.random((2, time, 1), dtype="float32")


@pytest.mark.parametrize("cls", [L.SimpleRNN, L.LSTM, L.GRU])
def test_fit_on_batches_of_varying_length(cls):
    """The time axis is unknown when traced (TensorFlow retraces with shape None)."""
    inputs = keras.Input((None, 3))
    hidden = keras.layers.Bidirectional(cls(4, return_sequences=True))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(_VariableLength(), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.predict(np.zeros((1, 9, 3), "float32"), verbose=0).shape == (1, 9, 1)


class _Wrapped(keras.layers.Layer):
    """A Dense before the layer and trainable initial states: the gradients that reach the
    projected inputs and the initial states show up as weight gradients."""

    def __init__(self, rnn, **kwargs):
        super().__init__(**kwargs)
        self.pre = keras.layers.Dense(4, kernel_initializer="orthogonal")
        self.rnn = rnn
        self.supports_masking = True

    def build(self, input_shape):
        self.pre.build(input_shape)
        self.initial = [
            self.add_weight(shape=(1, size), initializer="random_normal", name=f"state_{i}")
            for i, size in enumerate(self.rnn.state_size)
        ]
        self.rnn.build(input_shape)

    def call(self, x, mask=None):
        states = [ops.broadcast_to(s, (ops.shape(x)[0], s.shape[-1])) for s in self.initial]
        return self.rnn(self.pre(x), initial_state=states, mask=mask, training=True)


@pytest.mark.parametrize("mask_kind", [None, "padded-with-gaps"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"activation": "relu", "use_bias": False, "go_backwards": True},
        # per-timestep kernels (T, N, G) through the fused backward pass (the input kernel's
        # keep the projection before the loop)
        {"perturbations": [keras_rnnreg.perturbations.DropConnect(0.3, target="both")]},
        # per-sequence draws: (F, G) kernels, projected in the loop where that is on
        {
            "perturbations": [
                keras_rnnreg.perturbations.DropConnect(0.3, per="sequence", target="both")
            ]
        },
        # local reparameterization: (T, B, G) noise drawn before the loop, read by each step
        {"perturbations": [keras_rnnreg.perturbations.WeightNoise(0.3, sampling="local")]},
    ],
    ids=[
        "plain", "relu-no-bias-backwards", "per-timestep-kernels", "per-sequence-kernels",
        "local-noise",
    ],
)
@pytest.mark.parametrize("cls", [L.SimpleRNN, L.LSTM, L.GRU])
def test_loop_variants_agree(cls, kwargs, mask_kind, monkeypatch):
    """The three ways our loop can run, on every backend whichever the layers take there: the
    hand-written backward pass (layers/_steps.py; taken where _steps.FASTER_THAN_AUTODIFF) and
    the input projection computed inside the loop (base.PROJECT_IN_LOOP), each against autodiff
    through the loop over a projection made before it: outputs, final states and the gradients
    of the weights, the initial states and the inputs."""
    x = _x(batch=3, time=7, features=4)  # an odd length: the in-loop scan is unrolled by 2
    make = lambda: cls(  # noqa: E731
        5, return_sequences=True, return_state=True, seed=7, bias_initializer="random_normal",
        **kwargs,
    )
    variants = {"fused": (True, False), "in_loop": (False, True), "plain": (False, False)}
    layers = {name: _Wrapped(make()) for name in variants}
    for layer in layers.values():
        layer.build(x.shape)
    for name, (use_fused, in_loop) in variants.items():
        layers[name].set_weights(layers["plain"].get_weights())
        monkeypatch.setattr(layers[name].rnn, "_manual_backward", lambda v=use_fused: v)
        monkeypatch.setattr(layers[name].rnn, "_projects_in_loop", lambda v=in_loop: v)
    mask = None
    if mask_kind is not None:
        mask = np.ones((3, 7), dtype=bool)
        mask[0, :2] = False
        mask[2, :5] = False
        mask[1, 1:3] = False  # a gap
        mask[0, 4] = False  # a gap after left padding
        mask[1, 6] = False  # right padding
        mask = keras.ops.convert_to_tensor(mask)
    out_p, grads_p = value_and_grads(layers["plain"], x, mask=mask)
    assert len(grads_p) == len(layers["plain"].trainable_variables)
    for name in ("fused", "in_loop"):
        out, grads = value_and_grads(layers[name], x, mask=mask)
        np.testing.assert_allclose(out, out_p, atol=1e-5, err_msg=name)
        assert len(grads) == len(grads_p)
        for g, g_p in zip(grads, grads_p):
            np.testing.assert_allclose(g, g_p, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("cls", [L.SimpleRNN, L.LSTM, L.GRU, L.FastDropoutRNN])
def test_projection_in_loop_where_measured_faster(cls, monkeypatch):
    """The layers project before the loop except where base.PROJECT_IN_LOOP lists this backend,
    device and layer; FastDropoutRNN (its projection has a variance part) always before."""
    from keras_rnnreg import _backend
    from keras_rnnreg.layers import base

    device = "gpu" if _backend.gpu_available() else "cpu"
    listed = PROJECT = base.PROJECT_IN_LOOP[device].get(cls._kind, ())
    layer = cls(3, return_sequences=True)
    projections = []
    project = layer._project
    monkeypatch.setattr(layer, "_project", lambda *a: projections.append(1) or project(*a))
    layer(_x(), training=True)
    in_loop = keras.backend.backend() in PROJECT and cls is not L.FastDropoutRNN
    assert layer._projects_in_loop() is in_loop
    assert (not projections) is in_loop, (listed, projections)
