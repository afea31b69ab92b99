"""FastDropoutRNN / FastDropoutDense: moments against Monte-Carlo dropout, Keras equivalence, fit, saving."""

import keras
import numpy as np
import pytest

from keras_rnnreg.layers.fast_dropout import (
    FastDropoutDense,
    FastDropoutRNN,
    gaussian_moments,
    hermite_gauss,
)
from tests.conftest import to_numpy

F, U = 50, 6
N_SAMPLES = 40_000


def _init(stddev, seed):
    return keras.initializers.RandomNormal(stddev=stddev, seed=seed)


def _rnn(**kwargs):
    defaults = dict(
        rate=0.5,
        recurrent_rate=0.3,
        return_sequences=True,
        return_variance=True,
        kernel_initializer=_init(0.15, 1),
        recurrent_initializer=_init(0.5, 2),
        bias_initializer=_init(0.3, 3),
    )
    defaults.update(kwargs)
    return FastDropoutRNN(U, **defaults)


def _monte_carlo(x, weights, activation, steps, rate=0.5, recurrent_rate=0.3, seed=0):
    """Real (sampled, inverted) dropout on [x_t, h_{t-1}], fresh masks per timestep."""
    kernel, recurrent_kernel, bias = weights
    f = {"tanh": np.tanh, "linear": lambda a: a}[activation]
    rng = np.random.default_rng(seed)
    h = np.zeros((N_SAMPLES, recurrent_kernel.shape[0]))
    for t in range(steps):
        d_in = rng.random((N_SAMPLES, x.shape[-1])) < 1 - rate
        d_rec = rng.random(h.shape) < 1 - recurrent_rate
        h = f((d_in * x[t]) @ kernel / (1 - rate) + (d_rec * h) @ recurrent_kernel / (1 - recurrent_rate) + bias)
    return h.mean(0), h.var(0)


def _x(batch=3, steps=1, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, steps, F)).astype("float32")


def _weights(layer):
    return [np.asarray(w, np.float64) for w in layer.get_weights()]


def test_hermite_gauss_matches_numpy():
    for n in (2, 5, 16, 40):
        nodes, weights = hermite_gauss(n)
        ref_nodes, ref_weights = np.polynomial.hermite.hermgauss(n)
        np.testing.assert_allclose(sorted(nodes), ref_nodes, atol=1e-12)
        np.testing.assert_allclose(np.array(weights)[np.argsort(nodes)], ref_weights, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_gaussian_moments_against_exact_integrals(activation):
    mean, var = np.meshgrid(np.linspace(-3, 3, 13), np.array([0.0, 0.01, 0.3, 1.0]))
    mean, var = mean.astype("float32"), var.astype("float32")
    f = {"tanh": np.tanh, "sigmoid": lambda a: 1 / (1 + np.exp(-a))}[activation]
    nodes, weights = np.polynomial.hermite.hermgauss(200)
    points = mean[..., None] + np.sqrt(2 * var[..., None].astype(np.float64)) * nodes
    exact_mean = (weights * f(points)).sum(-1) / np.sqrt(np.pi)
    exact_var = (weights * f(points) ** 2).sum(-1) / np.sqrt(np.pi) - exact_mean**2
    for moments, tolerance in (("quadrature", 1e-3), ("probit", 0.06)):
        m, v = gaussian_moments(keras.ops.convert_to_tensor(mean), keras.ops.convert_to_tensor(var), activation, moments)
        np.testing.assert_allclose(to_numpy(m), exact_mean, atol=tolerance)
        np.testing.assert_allclose(to_numpy(v), exact_var, atol=tolerance)
        # zero variance: exactly the deterministic unit
        np.testing.assert_allclose(to_numpy(m)[0], f(mean[0]), atol=1e-6)
        np.testing.assert_allclose(to_numpy(v)[0], 0.0, atol=1e-6)


def test_one_step_pre_activation_moments_are_exact():
    """Linear units: mean and variance of Σ_j (d_j/p) w_j x_j + b are exact, MC within noise."""
    layer = _rnn(activation="linear")
    x = _x()
    mean, var = (to_numpy(t) for t in layer(x, training=True))
    for b in range(x.shape[0]):
        mc_mean, mc_var = _monte_carlo(x[b], _weights(layer), "linear", steps=1, seed=b)
        standard_error = np.sqrt(mc_var / N_SAMPLES)
        assert np.all(np.abs(mean[b, 0] - mc_mean) < 4.5 * standard_error)
        np.testing.assert_allclose(var[b, 0], mc_var, rtol=0.04)  # the MC variance's own noise: ~0.7 %


@pytest.mark.parametrize("moments, tolerance", [("quadrature", 0.03), ("probit", 0.07)])
def test_one_step_tanh_moments_match_monte_carlo_dropout(moments, tolerance):
    """tanh units, one step: the propagated (mean, variance) vs 40 000 sampled dropout masks.

    Absolute tolerance on mean and variance: 0.03 with quadrature (the Gaussian, CLT-over-50-inputs
    approximation of the pre-activation: observed ≤ 0.015), 0.07 with the probit closed forms
    (their own error against the exact Gaussian expectation is up to 0.055); MC noise ≈ 0.003.
    """
    layer = _rnn(activation="tanh", moments=moments)
    x = _x()
    mean, var = (to_numpy(t) for t in layer(x, training=True))
    for b in range(x.shape[0]):
        mc_mean, mc_var = _monte_carlo(x[b], _weights(layer), "tanh", steps=1, seed=b)
        np.testing.assert_allclose(mean[b, 0], mc_mean, atol=tolerance)
        np.testing.assert_allclose(var[b, 0], mc_var, atol=tolerance)
        assert mc_var.mean() > 0.05  # the noise is not negligible


def test_two_steps_recurrent_propagation_roughly_matches_monte_carlo():
    """Through the recurrence the units of h_{t-1} are correlated, which fast dropout ignores:
    a looser tolerance (absolute 0.06 on mean and variance)."""
    layer = _rnn(activation="tanh")
    x = _x(steps=2)
    mean, var = (to_numpy(t) for t in layer(x, training=True))
    for b in range(x.shape[0]):
        mc_mean, mc_var = _monte_carlo(x[b], _weights(layer), "tanh", steps=2, seed=10 + b)
        np.testing.assert_allclose(mean[b, 1], mc_mean, atol=0.06)
        np.testing.assert_allclose(var[b, 1], mc_var, atol=0.06)


def test_dense_head_is_the_marginal_probability():
    head = FastDropoutDense(4, rate=0.5, kernel_initializer=_init(0.3, 5), bias_initializer=_init(0.3, 6))
    rng = np.random.default_rng(1)
    z_mean = rng.normal(size=(2, F)).astype("float32")
    z_var = rng.uniform(0.0, 0.2, size=(2, F)).astype("float32")
    p = to_numpy(head([z_mean, z_var], training=True))
    kernel, bias = _weights(head)
    for b in range(2):
        z = z_mean[b] + np.sqrt(z_var[b]) * rng.normal(size=(N_SAMPLES, F))  # Gaussian incoming units
        d = rng.random((N_SAMPLES, F)) < 0.5
        mc = 1 / (1 + np.exp(-((d * z) @ kernel / 0.5 + bias)))
        np.testing.assert_allclose(p[b], mc.mean(0), atol=0.02)
    # inference: the deterministic mean network
    np.testing.assert_allclose(
        to_numpy(head([z_mean, z_var], training=False)), 1 / (1 + np.exp(-(z_mean @ kernel + bias))), rtol=1e-5
    )


def test_inference_is_keras_simple_rnn_with_the_same_weights():
    x = _x(batch=4, steps=7)
    ours = FastDropoutRNN(U, rate=0.5, return_sequences=True)
    ours(x)
    keras_rnn = keras.layers.SimpleRNN(U, return_sequences=True)
    keras_rnn(x)
    keras_rnn.set_weights(ours.get_weights())
    assert [w.shape for w in ours.get_weights()] == [(F, U), (U, U), (U,)]
    np.testing.assert_allclose(to_numpy(ours(x, training=False)), to_numpy(keras_rnn(x)), atol=1e-5)
    # and the weights move back
    ours.set_weights(keras_rnn.get_weights())


def test_rate_zero_training_equals_deterministic_pass_up_to_the_nonlinearity_mean():
    layer = _rnn(rate=0.0, recurrent_rate=0.0, activation="linear")
    x = _x(steps=4)
    mean, var = (to_numpy(t) for t in layer(x, training=True))
    det, det_var = (to_numpy(t) for t in layer(x, training=False))
    np.testing.assert_allclose(mean, det, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(var, 0.0)
    np.testing.assert_array_equal(det_var, 0.0)


def test_masks_keep_state_and_zero_outputs():
    x = _x(batch=2, steps=5)
    mask = np.ones((2, 5), bool)
    mask[0, :2] = False  # left padding
    mask[1, 3:] = False  # right padding
    layer = _rnn()
    mean, var = (to_numpy(t) for t in layer(x, mask=mask, training=True))
    assert np.all(mean[~mask] == 0) and np.all(var[~mask] == 0)
    unpadded_mean, unpadded_var = (to_numpy(t) for t in layer(x[:1, 2:], training=True))
    np.testing.assert_allclose(mean[0, 2:], unpadded_mean[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var[0, 2:], unpadded_var[0], rtol=1e-5, atol=1e-6)
    last = FastDropoutRNN(U, return_variance=True, kernel_initializer=_init(0.15, 1))
    last_mean, _ = last(x, mask=mask, training=True)
    full = FastDropoutRNN(U, return_sequences=True, kernel_initializer=_init(0.15, 1))
    full.build(x.shape)
    full.set_weights(last.get_weights())
    np.testing.assert_allclose(to_numpy(last_mean)[1], to_numpy(full(x[1:, :3], training=True))[0, -1], rtol=1e-5)


def _model(moments="quadrature"):
    inputs = keras.Input((None, 8))
    masked = keras.layers.Masking(0.0)(inputs)
    mean, var = FastDropoutRNN(
        10, rate=0.2, recurrent_rate=0.3, return_sequences=True, return_variance=True, moments=moments
    )(masked)
    outputs = FastDropoutDense(8, rate=0.3)([mean, var])
    return keras.Model(inputs, outputs)


def _piano_roll(seed=0):
    rng = np.random.default_rng(seed)
    roll = (rng.random((16, 7, 8)) < 0.3).astype("float32")
    roll[:4, :2] = 0.0  # zero-padded at the front, as the noise study pads short sequences
    return roll[:, :-1], roll[:, 1:]


def test_trains_with_fit():
    x, y = _piano_roll()
    model = _model("quadrature")  # "probit" runs in training mode in test_save_load_round_trip
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    history = model.fit(x, y, batch_size=8, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert np.all(np.isfinite(to_numpy(model.predict(x, verbose=0))))


def test_save_load_round_trip(tmp_path):
    x, _ = _piano_roll()
    model = _model("probit")
    path = str(tmp_path / "fd.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    for training in (False, True):
        np.testing.assert_allclose(
            to_numpy(restored(x, training=training)), to_numpy(model(x, training=training)), rtol=1e-6, atol=1e-7
        )
    layer = restored.layers[2]
    assert isinstance(layer, FastDropoutRNN)
    assert (layer.rate, layer.recurrent_rate, layer.moments, layer.return_variance) == (0.2, 0.3, "probit", True)


def test_config_round_trip_keeps_everything():
    layer = FastDropoutRNN(
        3, rate=0.1, recurrent_rate=None, activation="sigmoid", go_backwards=True, quadrature_points=8, unroll=2
    )
    config = layer.get_config()
    clone = FastDropoutRNN.from_config(config)
    assert clone.get_config() == config
    assert clone.recurrent_rate == 0.1


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="rate=1.0"):
        FastDropoutRNN(3, rate=1.0)
    with pytest.raises(ValueError, match="recurrent_rate=-0.1"):
        FastDropoutRNN(3, recurrent_rate=-0.1)
    with pytest.raises(ValueError, match="activation='relu'"):
        FastDropoutRNN(3, activation="relu")
    with pytest.raises(ValueError, match="moments='sampled'"):
        FastDropoutRNN(3, moments="sampled")
    with pytest.raises(ValueError, match="units=0"):
        FastDropoutDense(0)
    with pytest.raises(ValueError, match="quadrature_points=1"):
        FastDropoutDense(2, quadrature_points=1)


def test_go_backwards_and_initial_state():
    x = _x(batch=2, steps=4)
    forward = _rnn()
    mean, var = (to_numpy(t) for t in forward(x[:, ::-1], training=True))
    backward = _rnn(go_backwards=True)
    backward.build(x.shape)
    backward.set_weights(forward.get_weights())
    b_mean, b_var = (to_numpy(t) for t in backward(x, training=True))
    np.testing.assert_allclose(b_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b_var, var, rtol=1e-5, atol=1e-6)
    # Starting from step 2's (mean, variance) continues the sequence exactly.
    rest_mean, rest_var = forward(
        x[:, ::-1][:, 2:], initial_state=[mean[:, 1], var[:, 1]], training=True
    )
    np.testing.assert_allclose(to_numpy(rest_mean), mean[:, 2:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(rest_var), var[:, 2:], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow/XLA fallback")
def test_tensorflow_xla_request_falls_back_and_trains():
    x, y = _piano_roll()
    model = _model()
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=True)
    assert not model.jit_compile
    assert np.all(np.isfinite(model.fit(x, y, epochs=1, verbose=0).history["loss"]))
