"""Behaviour beyond Keras: relu/trec, the LSTM without output tanh, the cell sequence, mixed
precision, serialization and argument checking."""

import os

import keras
import numpy as np
import pytest

import keras_rnnreg
from tests.conftest import to_numpy, tolerance
from tests.gradients import value_and_grads

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


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("cls", [L.SimpleRNN, L.LSTM, L.GRU])
def test_mixed_precision(policy, cls):
    x = _x()
    reference = cls(4, return_sequences=True)
    expected = to_numpy(reference(x))
    keras.config.set_dtype_policy(policy)
    layer = cls(4, return_sequences=True)
    out = layer(x)
    layer.set_weights(reference.get_weights())
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
    assert keras.backend.standardize_dtype(layer.kernel.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(keras.ops.cast(out, "float32")), expected, atol=3e-2)


def _model(layer_factory):
    inputs = keras.Input((5, 3))
    hidden = layer_factory()(inputs)
    outputs = keras.layers.Dense(2)(hidden)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: L.SimpleRNN(4, activation="trec", return_sequences=True),
        lambda: L.LSTM(4, output_activation=None, return_sequences=True, go_backwards=True),
        lambda: keras.layers.Bidirectional(L.LSTM(4, return_sequences=True)),
        lambda: L.SimpleRNN(4, activation="relu", recurrent_initializer="identity", unroll=True),
    ],
    ids=["trec", "lstm-no-tanh", "bidirectional", "irnn"],
)
def test_save_and_load_identical_outputs(tmp_path, factory):
    model = _model(factory)
    x = _x()
    expected = to_numpy(model(x))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(restored(x)), expected, atol=1e-6)


def test_config_round_trip_is_complete():
    layer = L.LSTM(
        7, activation="relu", recurrent_activation="sigmoid", output_activation=None,
        unit_forget_bias=False, return_cell_sequence=True, go_backwards=True, dropout=0.1,
        kernel_regularizer="l2", recurrent_constraint="non_neg", seed=3,
    )
    clone = L.LSTM.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


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


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "left-padded"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"activation": "relu", "use_bias": False},
        # per-timestep kernels (T, N, G) through the fused backward pass
        {"perturbations": [keras_rnnreg.perturbations.DropConnect(0.3)]},
    ],
    ids=["plain", "relu-no-bias", "per-timestep-kernels"],
)
@pytest.mark.parametrize("cls", [L.SimpleRNN, L.LSTM])
def test_fused_backward_equals_autodiff(cls, kwargs, masked, monkeypatch):
    """The hand-written backward pass (layers/_fused.py) against autodiff through the same loop,
    on every backend (the layers take it only where it is faster: _fused.FASTER_THAN_AUTODIFF)."""
    x = _x(batch=3, time=6, features=4)
    fused = cls(5, return_sequences=True, seed=7, bias_initializer="random_normal", **kwargs)
    plain = cls(5, return_sequences=True, seed=7, **kwargs)
    fused(x)
    plain(x)
    plain.set_weights(fused.get_weights())
    monkeypatch.setattr(fused, "_use_fused", lambda: True)
    monkeypatch.setattr(plain, "_use_fused", lambda: False)
    mask = None
    if masked:
        mask = np.ones((3, 6), dtype=bool)
        mask[0, :2] = False
        mask[2, :5] = False
        mask = keras.ops.convert_to_tensor(mask)
    out_f, grads_f = value_and_grads(fused, x, mask=mask, training=True)
    out_p, grads_p = value_and_grads(plain, x, mask=mask, training=True)
    np.testing.assert_allclose(out_f, out_p, atol=1e-5)
    assert len(grads_f) == len(grads_p) == len(fused.trainable_variables)
    for g_f, g_p in zip(grads_f, grads_p):
        np.testing.assert_allclose(g_f, g_p, atol=1e-5)
