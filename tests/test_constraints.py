"""SpectralRadiusLimit: eagerly, and inside fit on each backend."""

import keras
import numpy as np
import pytest

from keras_rnnreg.constraints import SpectralRadiusLimit
from tests.conftest import to_numpy


def _radius(w):
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(w, np.float64)))))


def _norm(w):
    return float(np.linalg.norm(np.asarray(w, np.float64), 2))


def _random(n, scale, seed=0, width=None):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, width or n)) * scale / np.sqrt(n)).astype("float32")


@pytest.mark.parametrize("method", ["power", "exact"])
def test_rescales_to_exactly_the_limit(method):
    w = _random(16, 3.0)
    out = to_numpy(SpectralRadiusLimit(1.1, method=method, iterations=100)(w))
    if method == "exact":
        assert abs(_radius(out) - 1.1) < 1e-4
    else:
        assert abs(_norm(out) - 1.1) < 1e-3
        assert _radius(out) <= 1.1 + 1e-4
    # a rescaled copy: same direction
    np.testing.assert_allclose(out / np.linalg.norm(out), w / np.linalg.norm(w), atol=1e-6)


@pytest.mark.parametrize("method", ["power", "exact"])
def test_leaves_matrix_under_the_limit_unchanged(method):
    w = _random(12, 0.3)
    assert _norm(w) < 1.1
    out = to_numpy(SpectralRadiusLimit(1.1, method=method)(w))
    np.testing.assert_array_equal(out, w)


def test_exact_acts_on_radius_not_norm():
    # Non-normal: spectral norm 5, spectral radius 0.5. "exact" leaves it, "power" rescales it.
    w = np.array([[0.5, 5.0], [0.0, 0.5]], "float32")
    np.testing.assert_array_equal(to_numpy(SpectralRadiusLimit(1.0, method="exact")(w)), w)
    out = to_numpy(SpectralRadiusLimit(1.0, method="power", iterations=50)(w))
    assert abs(_norm(out) - 1.0) < 1e-3


@pytest.mark.parametrize("method", ["power", "exact"])
def test_gate_blocks_limited_separately(method):
    n = 6
    w = np.concatenate([_random(n, s, seed=i) for i, s in enumerate([0.2, 3.0, 0.5, 4.0])], axis=1)
    out = to_numpy(SpectralRadiusLimit(1.0, method=method, iterations=100)(w))
    for j, changed in enumerate([False, True, False, True]):
        block, orig = out[:, j * n : (j + 1) * n], w[:, j * n : (j + 1) * n]
        if changed:
            measure = _radius(block) if method == "exact" else _norm(block)
            assert abs(measure - 1.0) < 1e-3
        else:
            np.testing.assert_array_equal(block, orig)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_radius"):
        SpectralRadiusLimit(0.0)
    with pytest.raises(ValueError, match="method='svd'"):
        SpectralRadiusLimit(1.0, method="svd")
    with pytest.raises(ValueError, match="iterations"):
        SpectralRadiusLimit(1.0, iterations=0)
    with pytest.raises(ValueError, match="shape"):
        SpectralRadiusLimit(1.0)(np.ones((3, 4), "float32"))


def test_serialization_round_trip():
    c = SpectralRadiusLimit(0.9, method="exact", iterations=7)
    config = keras.constraints.serialize(c)
    assert config["registered_name"] == "keras_rnnreg>SpectralRadiusLimit"
    restored = keras.constraints.deserialize(config)
    assert restored.get_config() == {"max_radius": 0.9, "method": "exact", "iterations": 7}


def _fit_simple_rnn(constraint, initial_weights=None):
    from keras_rnnreg.layers import SimpleRNN

    inputs = keras.Input((8, 3))
    h = SimpleRNN(
        10,
        recurrent_initializer=keras.initializers.Orthogonal(gain=1.05, seed=1),
        recurrent_constraint=constraint,
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    if initial_weights is not None:
        model.set_weights(initial_weights)
    initial = [to_numpy(v) for v in model.get_weights()]
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=5.0), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 3)).astype("float32")
    y = 10 * rng.normal(size=(16, 2)).astype("float32")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return initial, to_numpy(model.layers[1].recurrent_kernel)


@pytest.mark.parametrize("method", ["power", "exact"])
def test_limit_holds_during_fit(method):
    limit = 1.1
    initial, u = _fit_simple_rnn(SpectralRadiusLimit(limit, method=method))
    assert not np.allclose(u, initial[1])  # it did train
    assert _radius(u) <= limit * (1 + 1e-5)
    if method == "power":
        assert _norm(u) <= limit * (1 + 1e-3)
    if method == "exact":
        # Without the constraint the same run leaves the limit far behind (not vacuous).
        _, free = _fit_simple_rnn(None, initial_weights=initial)
        assert _norm(free) > 1.5 * limit and _radius(free) > limit


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="XLA check for TensorFlow; JAX's fit is always jit-compiled (test above)",
)
def test_power_method_under_xla_on_tensorflow():
    from keras_rnnreg.layers import SimpleRNN

    inputs = keras.Input((8, 3))
    h = SimpleRNN(6, recurrent_constraint=SpectralRadiusLimit(1.1))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=5.0), loss="mse", jit_compile=True)
    assert model.jit_compile
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(8, 8, 3)), 10 * rng.normal(size=(8, 2)), epochs=2, verbose=0)
    u = to_numpy(model.layers[1].recurrent_kernel)
    assert _norm(u) <= 1.1 * (1 + 1e-3)
