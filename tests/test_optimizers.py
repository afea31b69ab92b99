import keras
import numpy as np
import pytest

from keras_rnnreg.optimizers import CliminRMSprop


def climin_rmsprop(theta, grad, steps, step_rate, decay, momentum):
    """climin.RmsProp._iterate, transcribed: the look-ahead points where gradients are taken."""
    ms, step, points = 1.0, 0.0, []
    theta = theta.copy()
    for _ in range(steps):
        step1 = step * momentum
        theta = theta - step1
        points.append(theta.copy())
        g = grad(theta)
        ms = decay * ms + (1 - decay) * g**2
        step2 = step_rate * g / np.sqrt(ms + 1e-8)
        theta = theta - step2
        step = step1 + step2
    return points


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_matches_climin(momentum):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 4))
    b = rng.normal(size=6)

    def grad(theta):
        return a.T @ (a @ theta - b) * np.array([1.0, 1e-3, 10.0, 1e-5])  # mixed scales

    theta0 = rng.normal(size=4)
    expected = climin_rmsprop(theta0, grad, 30, 0.01, 0.9, momentum)
    variable = keras.Variable(theta0.astype("float32"))
    optimizer = CliminRMSprop(0.01, rho=0.9, momentum=momentum)
    got = []
    for _ in range(30):
        got.append(keras.ops.convert_to_numpy(variable))
        g = grad(got[-1].astype("float64")).astype("float32")
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=2e-5, atol=2e-6)


def test_first_step_is_damped_unlike_keras():
    """The accumulator starts at 1: a small gradient gives a small first step (Keras': ~2.2 α)."""
    first_steps = (
        (CliminRMSprop(0.1), 0.1 * 1e-3 / np.sqrt(0.9 + 0.1 * 1e-6 + 1e-8)),
        (keras.optimizers.RMSprop(0.1), 0.1 * 1e-3 / np.sqrt(0.1 * 1e-6 + 1e-7)),
    )
    for optimizer, expected in first_steps:
        variable = keras.Variable(np.zeros(1, "float32"))
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(np.full(1, 1e-3, "float32")),
                                    variable)])
        np.testing.assert_allclose(-keras.ops.convert_to_numpy(variable), [expected], rtol=1e-3)


def test_config_round_trip_and_fit(tmp_path):
    optimizer = CliminRMSprop(0.002, rho=0.8, momentum=0.95, global_clipnorm=1.0)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, CliminRMSprop)
    for key in ("rho", "momentum", "epsilon", "initial_accumulator_value", "global_clipnorm"):
        assert getattr(clone, key) == getattr(optimizer, key)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model.fit(x, x[:, :1], epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(reloaded.optimizer, CliminRMSprop)
    assert reloaded.optimizer.momentum == 0.95


@pytest.mark.parametrize("kwargs", [{"rho": 1.0}, {"momentum": -0.1}, {"epsilon": -1.0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Invalid value for argument"):
        CliminRMSprop(**kwargs)
