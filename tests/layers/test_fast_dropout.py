"""FastDropoutRNN / FastDropoutDense: moments against Monte-Carlo dropout, Keras equivalence, the
inference modes, perturbations and the state regularizer, fit; the rest through harness.py."""

import keras
import numpy as np
import pytest

from keras_rnnreg.layers.fast_dropout import (
    FastDropoutDense,
    FastDropoutRNN,
    gaussian_moments,
    hermite_gauss,
)
from keras_rnnreg.perturbations import DropConnect, WeightNoise
from keras_rnnreg.regularizers import NormStabilizer, state_penalty
from tests.conftest import to_numpy
from tests.layers.harness import run_layer_test

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
        h = f(
            (d_in * x[t]) @ kernel / (1 - rate)
            + (d_rec * h) @ recurrent_kernel / (1 - recurrent_rate)
            + bias
        )
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
        np.testing.assert_allclose(
            np.array(weights)[np.argsort(nodes)], ref_weights, rtol=1e-10, atol=1e-300
        )


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
        m, v = gaussian_moments(
            keras.ops.convert_to_tensor(mean), keras.ops.convert_to_tensor(var), activation, moments
        )
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
        # rtol 0.04: the MC variance's own noise is ~0.7 %
        np.testing.assert_allclose(var[b, 0], mc_var, rtol=0.04)


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
    head = FastDropoutDense(
        4, rate=0.5, kernel_initializer=_init(0.3, 5), bias_initializer=_init(0.3, 6)
    )
    rng = np.random.default_rng(1)
    z_mean = rng.normal(size=(2, F)).astype("float32")
    z_var = rng.uniform(0.0, 0.2, size=(2, F)).astype("float32")
    p = to_numpy(head([z_mean, z_var], training=True))
    kernel, bias = _weights(head)
    for b in range(2):
        # Gaussian incoming units
        z = z_mean[b] + np.sqrt(z_var[b]) * rng.normal(size=(N_SAMPLES, F))
        d = rng.random((N_SAMPLES, F)) < 0.5
        mc = 1 / (1 + np.exp(-((d * z) @ kernel / 0.5 + bias)))
        np.testing.assert_allclose(p[b], mc.mean(0), atol=0.02)
    # inference: the deterministic mean network
    np.testing.assert_allclose(
        to_numpy(head([z_mean, z_var], training=False)),
        1 / (1 + np.exp(-(z_mean @ kernel + bias))),
        rtol=1e-5,
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


@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_masks_keep_state_and_outputs_as_keras(zero_output_for_mask):
    """Masked steps carry (mean, variance); outputs there as Keras' RNN: zeros with
    zero_output_for_mask, else the previous output (zeros before the first valid step)."""
    x = _x(batch=2, steps=5)
    mask = np.ones((2, 5), bool)
    mask[0, :2] = False  # left padding
    mask[1, 3:] = False  # right padding
    layer = _rnn(zero_output_for_mask=zero_output_for_mask)
    mean, var = (to_numpy(t) for t in layer(x, mask=mask, training=True))
    unpadded_mean, unpadded_var = (to_numpy(t) for t in layer(x[:1, 2:], training=True))
    np.testing.assert_allclose(mean[0, 2:], unpadded_mean[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var[0, 2:], unpadded_var[0], rtol=1e-5, atol=1e-6)
    assert np.all(mean[0, :2] == 0) and np.all(var[0, :2] == 0)
    padded = (0.0, 0.0) if zero_output_for_mask else (mean[1, 2], var[1, 2])
    np.testing.assert_array_equal(mean[1, 3:], np.broadcast_to(padded[0], (2, U)))
    np.testing.assert_array_equal(var[1, 3:], np.broadcast_to(padded[1], (2, U)))
    last = _rnn(return_sequences=False, zero_output_for_mask=zero_output_for_mask)
    last.build(x.shape)
    last.set_weights(layer.get_weights())
    last_mean, last_var = (to_numpy(t) for t in last(x, mask=mask, training=True))
    np.testing.assert_allclose(last_mean, mean[:, -1], rtol=1e-6)
    np.testing.assert_allclose(last_var, var[:, -1], rtol=1e-6)


# ---------------------------------------------------------------------------------- inference
class _ZooMarginalRNN(FastDropoutRNN):
    """A copy of keras_rnnreg.zoo._builders.MarginalFastDropoutRNN (issue 12 replaces it by
    inference="marginal")."""

    def call(self, sequences, initial_state=None, mask=None, training=None):
        return super().call(sequences, initial_state=initial_state, mask=mask, training=True)


class _ZooMarginalDense(FastDropoutDense):
    """A copy of keras_rnnreg.zoo._builders.MarginalFastDropoutDense."""

    def call(self, inputs, training=None):
        return super().call(inputs, training=True)


def test_marginal_inference_is_the_zoos_marginal_subclasses():
    def model(rnn_cls, dense_cls, **kwargs):
        inputs = keras.Input((None, 8))
        mean, var = rnn_cls(
            10, rate=0.2, recurrent_rate=0.3, return_sequences=True, return_variance=True,
            **kwargs,
        )(inputs)
        return keras.Model(inputs, dense_cls(8, rate=0.3, **kwargs)([mean, var]))

    x, _ = _piano_roll()
    zoo = model(_ZooMarginalRNN, _ZooMarginalDense)
    ours = model(FastDropoutRNN, FastDropoutDense, inference="marginal")
    ours.set_weights(zoo.get_weights())
    expected = zoo.predict(x, verbose=0)
    np.testing.assert_array_equal(ours.predict(x, verbose=0), expected)
    # training mode, eager (predict is compiled on JAX / TensorFlow: float rounding differs)
    np.testing.assert_allclose(to_numpy(ours(x, training=True)), expected, atol=1e-6)
    mean_net = model(FastDropoutRNN, FastDropoutDense)  # inference="mean", the default
    mean_net.set_weights(zoo.get_weights())
    assert np.abs(mean_net.predict(x, verbose=0) - expected).max() > 1e-3


# ------------------------------------------------------------ perturbations, state regularizer
def _np_moments(x, kernels, recurrent_kernels, bias, rate, recurrent_rate):
    """The module docstring's moment equations with linear units, one (kernel, recurrent kernel)
    per timestep: the drawn kernels replace W and U."""
    keep, keep_rec = 1.0 - rate, 1.0 - recurrent_rate
    mean = np.zeros((x.shape[0], recurrent_kernels[0].shape[0]))
    var = np.zeros_like(mean)
    means, variances = [], []
    for t in range(x.shape[1]):
        w, u = kernels[t], recurrent_kernels[t]
        new_mean = x[:, t] @ w + mean @ u + bias
        var = (
            (x[:, t] ** 2 * (1 - keep) / keep) @ w**2
            + ((var + (1 - keep_rec) * mean**2) / keep_rec) @ u**2
        )
        mean = new_mean
        means.append(mean)
        variances.append(var)
    return np.stack(means, 1), np.stack(variances, 1)


@pytest.mark.parametrize(
    "perturbation",
    [DropConnect(0.4, target="both"), WeightNoise(0.2, per="sequence", target="both")],
    ids=repr,
)
def test_drawn_kernels_replace_the_weights_in_the_moment_equations(perturbation, monkeypatch):
    drawn = []
    original = type(perturbation).perturb

    def recording(self, weight, time_steps, seed_generator):
        out = original(self, weight, time_steps, seed_generator)
        drawn.append(to_numpy(out))
        return out

    monkeypatch.setattr(type(perturbation), "perturb", recording)
    layer = _rnn(activation="linear", perturbations=[perturbation], seed=3)
    x = _x(steps=4)
    mean, var = (to_numpy(t) for t in layer(x, training=True))
    kernel_draw, recurrent_draw = drawn[-2:]  # input kernel first (kernels_for_step)
    if perturbation.per == "sequence":
        kernel_draw, recurrent_draw = [kernel_draw] * 4, [recurrent_draw] * 4
    bias = layer.get_weights()[2]
    expected = _np_moments(x, kernel_draw, recurrent_draw, bias, 0.5, 0.3)
    np.testing.assert_allclose(mean, expected[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(var, expected[1], rtol=1e-4, atol=1e-4)
    clean = _rnn(activation="linear")
    clean.build(x.shape)
    clean.set_weights(layer.get_weights())
    assert np.abs(mean - to_numpy(clean(x, training=True)[0])).max() > 1e-2
    # Inference: the perturbations' inference weights (here the clean ones).
    np.testing.assert_allclose(to_numpy(layer(x)[0]), to_numpy(clean(x)[0]), atol=1e-6)


def test_dropconnect_inference_scale_in_both_inference_modes():
    x = _x(steps=3)
    for inference in ("mean", "marginal"):
        layer = _rnn(perturbations=[DropConnect(0.25, scale="inference")], inference=inference)
        scaled = _rnn(inference=inference)
        layer.build(x.shape)
        scaled.build(x.shape)
        kernel, recurrent_kernel, bias = layer.get_weights()
        scaled.set_weights([kernel, 0.75 * recurrent_kernel, bias])
        for a, b in zip(layer(x), scaled(x)):
            np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-6)


def test_state_regularizer_sees_the_mean_sequence():
    x = _x(batch=3, steps=6)
    mask = np.ones((3, 6), bool)
    mask[1, :2] = False
    layer = _rnn(state_regularizer=NormStabilizer(5.0))
    mean, _ = layer(x, mask=mask, training=True)
    float_mask = keras.ops.convert_to_tensor(mask, "float32")
    expected = 5.0 * to_numpy(state_penalty(mean, mask=float_mask))
    assert len(layer.losses) == 1
    np.testing.assert_allclose(to_numpy(layer.losses[0]), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="on='cell'"):
        FastDropoutRNN(3, state_regularizer=NormStabilizer(1.0, on="cell"))


def test_stateful_carries_mean_and_variance():
    x = _x(batch=2, steps=6)
    whole = _rnn()
    chunked = _rnn(stateful=True)
    whole.build(x.shape)
    chunked.build(x.shape)
    chunked.set_weights(whole.get_weights())
    assert len(chunked.states) == 2
    parts = [chunked(x[:, :3], training=True), chunked(x[:, 3:], training=True)]
    for i, expected in enumerate(whole(x, training=True)):
        got = np.concatenate([to_numpy(p[i]) for p in parts], axis=1)
        np.testing.assert_allclose(got, to_numpy(expected), rtol=1e-5, atol=1e-6)


def _model(moments="quadrature"):
    inputs = keras.Input((None, 8))
    masked = keras.layers.Masking(0.0)(inputs)
    mean, var = FastDropoutRNN(
        10, rate=0.2, recurrent_rate=0.3, return_sequences=True, return_variance=True,
        moments=moments,
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


@pytest.mark.parametrize(
    "make, num_losses, recurrent",
    [
        (lambda: FastDropoutRNN(
            6, rate=0.2, recurrent_rate=0.3, return_sequences=True, return_variance=True,
            moments="probit", inference="marginal", kernel_regularizer="l2",
            perturbations=[DropConnect(0.2, per="sequence")],
            state_regularizer=NormStabilizer(3.0)), 2, True),
        (lambda: FastDropoutRNN(
            3, rate=0.1, activation="sigmoid", go_backwards=True, quadrature_points=8, unroll=2,
            return_variance=True, return_state=True), 0, True),
        (lambda: FastDropoutDense(
            5, rate=0.3, return_variance=True, inference="marginal",
            kernel_regularizer="l2"), 1, False),
    ],
    ids=["rnn-marginal-perturbed", "rnn-backwards-state", "dense"],
)
def test_layer_harness(make, num_losses, recurrent, tmp_path):
    run_layer_test(make, tmp_path, expected_num_losses=num_losses, recurrent=recurrent)


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
    # A single initial tensor is the mean, with zero variance.
    for a, b in zip(forward(x, initial_state=mean[:, 1], training=True),
                    forward(x, initial_state=[mean[:, 1], np.zeros_like(var[:, 1])],
                            training=True)):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


class _VariableLength(keras.utils.PyDataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        x, y = _piano_roll(seed=index)
        return x[:, : 3 + 2 * index], y[:, : 3 + 2 * index]


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="jit_compile means torch.compile")
def test_trains_under_xla_and_predicts_batches_of_varying_length():
    """XLA on TensorFlow (what Keras picks by itself on a GPU), jit on JAX; batches of varying
    length leave the time axis unknown when traced (TensorFlow retraces with shape None)."""
    model = _model()
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=True)
    assert model.jit_compile
    assert np.all(np.isfinite(model.fit(_VariableLength(), epochs=1, verbose=0).history["loss"]))
    marginal = keras.Model.from_config(
        _with_marginal_inference(model.get_config()), custom_objects=None
    )
    marginal.set_weights(model.get_weights())
    for length in (4, 6, 3):
        out = marginal.predict_on_batch(_piano_roll()[0][:, :length])
        assert out.shape == (16, length, 8) and np.all(np.isfinite(out))


def _with_marginal_inference(config):
    for layer in config["layers"]:
        if layer["class_name"] in ("FastDropoutRNN", "FastDropoutDense"):
            layer["config"]["inference"] = "marginal"
    return config
