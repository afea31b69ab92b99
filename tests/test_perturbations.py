"""Weight noise and DropConnect: rates and variances, per-timestep vs per-sequence draws made
observable on a 1-unit linear RNN, local reparameterization moments, clean inference, fit and
save/load on every backend."""

import os

import keras
import numpy as np
import pytest

from keras_rnnreg import layers
from keras_rnnreg.perturbations import DropConnect, WeightNoise
from tests.conftest import to_numpy


def _draws(p, weight, time_steps=400, seed=0):
    return to_numpy(
        p.perturb(keras.ops.convert_to_tensor(weight), time_steps, keras.random.SeedGenerator(seed))
    )


def test_additive_noise_mean_and_stddev():
    w = np.linspace(-1, 1, 64, dtype="float32").reshape(8, 8)
    d = _draws(WeightNoise(0.05), w)
    assert d.shape == (400, 8, 8)
    noise = d - w
    assert abs(noise.mean()) < 0.002
    assert abs(noise.std() - 0.05) < 0.002


def test_multiplicative_noise_scales_with_weight():
    w = np.linspace(0.5, 2.0, 64, dtype="float32").reshape(8, 8)
    d = _draws(WeightNoise(0.1, mode="multiplicative", per="sequence"), w)
    assert d.shape == (8, 8)  # per sequence: one draw
    d = _draws(WeightNoise(0.1, mode="multiplicative"), w)
    ratio = d / w - 1.0
    assert abs(ratio.mean()) < 0.004
    assert abs(ratio.std() - 0.1) < 0.004


@pytest.mark.parametrize("scale", [True, False, "inference"])
def test_dropconnect_rate_and_scale(scale):
    w = np.full((8, 8), 2.0, dtype="float32")
    d = _draws(DropConnect(0.3, scale=scale), w)
    dropped = d == 0.0
    assert abs(dropped.mean() - 0.3) < 0.01
    kept_value = 2.0 / 0.7 if scale is True else 2.0
    np.testing.assert_allclose(d[~dropped], kept_value, rtol=1e-6)
    expected_mean = 2.0 if scale is True else 2.0 * 0.7
    assert abs(d.mean() - expected_mean) < 0.03
    # Inference: the clean W, or the training draws' expected matrix for scale="inference".
    inferred = to_numpy(DropConnect(0.3, scale=scale).deterministic(keras.ops.convert_to_tensor(w)))
    np.testing.assert_allclose(inferred, 2.0 * 0.7 if scale == "inference" else 2.0, rtol=1e-6)


@pytest.mark.parametrize("target", ["input", "recurrent"])
def test_dropconnect_scaled_at_inference_in_the_layer(target):
    """scale="inference": the layer runs (1 - rate) W on the target kernel at inference (and on
    the fused loop, as a plain layer with those weights)."""
    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")
    dropped = layers.LSTM(
        6,
        return_sequences=True,
        perturbations=[DropConnect(0.25, scale="inference", target=target)],
    )
    reference = layers.LSTM(6, return_sequences=True)
    dropped(x)
    reference(x)
    kernel, recurrent_kernel, bias = (to_numpy(w) for w in dropped.weights)
    if target == "input":
        kernel = kernel * 0.75
    else:
        recurrent_kernel = recurrent_kernel * 0.75
    reference.set_weights([kernel, recurrent_kernel, bias])
    np.testing.assert_allclose(to_numpy(dropped(x)), to_numpy(reference(x)), atol=1e-6)


def _unit_rnn(perturbation, u=0.5):
    layer = layers.SimpleRNN(
        1,
        activation="linear",
        use_bias=False,
        return_sequences=True,
        kernel_initializer="ones",
        recurrent_initializer=keras.initializers.Constant(u),
        perturbations=[perturbation],
        seed=7,
    )
    return layer


def _recovered_recurrent_weights(layer, batch=4, time=12):
    """h_t = 1 + h_{t-1} ũ_t for x_t = 1, w = 1: recover ũ_t = (h_t - 1) / h_{t-1}."""
    x = np.ones((batch, time, 1), dtype="float32")
    h = to_numpy(layer(x, training=True))[..., 0].astype("float64")
    return (h[:, 1:] - 1.0) / h[:, :-1]


@pytest.mark.parametrize(
    "perturbation",
    [
        WeightNoise(0.1, per="sequence"),
        WeightNoise(0.1, mode="multiplicative", per="sequence"),
        DropConnect(0.5, per="sequence"),
    ],
    ids=["additive", "multiplicative", "dropconnect"],
)
def test_per_sequence_draw_is_shared_by_all_timesteps(perturbation):
    u = _recovered_recurrent_weights(_unit_rnn(perturbation))
    np.testing.assert_allclose(u, u[0, 0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "perturbation",
    [WeightNoise(0.1), WeightNoise(0.1, mode="multiplicative"), DropConnect(0.5)],
    ids=["additive", "multiplicative", "dropconnect"],
)
def test_per_timestep_draws_differ_across_timesteps_but_not_across_the_batch(perturbation):
    u = _recovered_recurrent_weights(_unit_rnn(perturbation), time=40)
    # one weight matrix per timestep, shared by the sequences of the batch
    np.testing.assert_allclose(u, np.broadcast_to(u[:1], u.shape), rtol=1e-4, atol=1e-5)
    assert np.unique(np.round(u[0], 5)).size > (1 if isinstance(perturbation, DropConnect) else 30)


def test_local_sampling_is_per_example():
    u = _recovered_recurrent_weights(
        _unit_rnn(WeightNoise(0.1, sampling="local")), batch=64, time=4
    )
    assert np.std(u[:, 0]) > 0.05  # examples get independent noise
    assert abs(np.std(u) - 0.1) < 0.02
    assert abs(np.mean(u) - 0.5) < 0.02


@pytest.mark.parametrize(
    "weight_level,local",
    [
        (WeightNoise(0.2), WeightNoise(0.2, sampling="local")),
        (
            WeightNoise(0.2, mode="multiplicative"),
            WeightNoise(0.2, mode="multiplicative", sampling="local"),
        ),
        (DropConnect(0.4), DropConnect(0.4, sampling="local")),
    ],
    ids=["additive", "multiplicative", "dropconnect"],
)
def test_local_reparameterization_matches_weight_level_moments(weight_level, local):
    """One recurrent step from a fixed state h: E and Var of h Ũ, both ways, vs the analytic."""
    rng = np.random.default_rng(0)
    units = 5
    h0 = rng.normal(size=(1, units)).astype("float32")
    u = rng.normal(size=(units, units)).astype("float32") * 0.5
    variance = {
        "additive": (h0**2).sum() * 0.2**2 * np.ones(units),
        "multiplicative": (h0.T**2 * u**2).sum(0) * 0.2**2,
        "dropconnect": (h0.T**2 * u**2).sum(0) * 0.4 / 0.6,
    }["dropconnect" if isinstance(weight_level, DropConnect) else weight_level.mode]
    # weight level: 4000 per-timestep draws of U
    draws = _draws(weight_level, u, time_steps=4000, seed=3)
    samples_w = np.einsum("i,tij->tj", h0[0], draws)
    # local: one timestep, 4000 examples, from the same state
    layer = layers.SimpleRNN(
        units,
        activation="linear",
        use_bias=False,
        kernel_initializer="zeros",
        perturbations=[local],
        seed=5,
    )
    x = np.zeros((4000, 1, 1), dtype="float32")
    layer(x[:1])
    layer.recurrent_kernel.assign(u)
    samples_l = to_numpy(layer(x, initial_state=[np.repeat(h0, 4000, 0)], training=True))
    for samples in (samples_w, samples_l):
        np.testing.assert_allclose(
            samples.mean(0), h0[0] @ u, atol=4 * np.sqrt(variance.max() / 4000)
        )
        np.testing.assert_allclose(samples.var(0), variance, rtol=0.12)


@pytest.mark.parametrize("target", ["input", "recurrent", "both"])
@pytest.mark.parametrize("cls", [layers.SimpleRNN, layers.LSTM])
def test_clean_at_inference_and_weights_untouched(cls, target):
    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype("float32")
    noisy = cls(
        6,
        perturbations=[
            WeightNoise(0.5, target=target),
            DropConnect(0.3, per="sequence", target=target),
        ],
        return_sequences=True,
    )
    clean = cls(6, return_sequences=True)
    noisy(x)
    clean(x)
    clean.set_weights(noisy.get_weights())
    before = [to_numpy(w).copy() for w in noisy.weights]
    train_out = to_numpy(noisy(x, training=True))
    assert not np.allclose(train_out, to_numpy(clean(x)), atol=1e-3)
    np.testing.assert_allclose(to_numpy(noisy(x)), to_numpy(clean(x)), atol=1e-6)
    np.testing.assert_allclose(to_numpy(noisy(x, training=False)), to_numpy(clean(x)), atol=1e-6)
    for w, b in zip(noisy.weights, before):
        np.testing.assert_array_equal(to_numpy(w), b)


@pytest.mark.parametrize(
    "perturbations",
    [
        [WeightNoise(0.05)],
        [WeightNoise(0.05, per="sequence", mode="multiplicative")],
        [DropConnect(0.3)],
        [DropConnect(0.3, per="sequence")],
        [WeightNoise(0.05, target="input")],
        [WeightNoise(0.05, sampling="local", target="both")],
        [DropConnect(0.3, sampling="local")],
    ],
    ids=["n", "mns", "do", "dos", "ff", "local-n", "local-do"],
)
@pytest.mark.parametrize("cls", [layers.SimpleRNN, layers.LSTM])
def test_fit_and_save_load(tmp_path, cls, perturbations):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 6, 3)).astype("float32")
    y = (x.sum(-1, keepdims=True) > 0).astype("float32")
    inputs = keras.Input((6, 3))
    hidden = cls(8, return_sequences=True, perturbations=perturbations)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(model(x)), atol=1e-6)
    restored_layer = restored.layers[1]
    assert [p.get_config() for p in restored_layer.perturbations] == [
        p.get_config() for p in perturbations
    ]


def test_bidirectional_with_perturbations():
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    layer = keras.layers.Bidirectional(
        layers.LSTM(4, return_sequences=True, perturbations=[WeightNoise(0.3)])
    )
    a = to_numpy(layer(x, training=True))
    b = to_numpy(layer(x))
    assert a.shape == b.shape == (2, 5, 8)
    assert not np.allclose(a, b)


@pytest.mark.parametrize(
    "make,argument",
    [
        (lambda: WeightNoise(-0.1), "stddev"),
        (lambda: WeightNoise(0.1, mode="both"), "mode"),
        (lambda: WeightNoise(0.1, per="batch"), "per"),
        (lambda: WeightNoise(0.1, target="output"), "target"),
        (lambda: WeightNoise(0.1, sampling="local", per="sequence"), "per"),
        (lambda: DropConnect(1.0), "rate"),
        (lambda: DropConnect(-0.2), "rate"),
        (lambda: DropConnect(0.2, scale="test"), "scale"),
        (lambda: DropConnect(0.2, scale="inference", sampling="local"), "scale"),
        (
            lambda: layers.SimpleRNN(
                3, perturbations=[WeightNoise(0.1, sampling="local"), DropConnect(0.1)]
            ),
            "local",
        ),
        (lambda: layers.SimpleRNN(3, perturbations=["noise"]), "perturbations"),
    ],
)
def test_bad_arguments(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()
