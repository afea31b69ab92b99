"""Sparse and SpectralRadius initializers."""

import keras
import numpy as np
import pytest

from keras_rnnreg.initializers import Sparse, SpectralRadius, spectral_radius
from tests.conftest import to_numpy


@pytest.mark.parametrize("shape", [(40, 30), (64, 4 * 8)])
def test_sparse_exact_connections_per_column(shape):
    w = to_numpy(Sparse(connections=15, stddev=0.5, seed=3)(shape))
    assert w.shape == shape
    np.testing.assert_array_equal((w != 0).sum(axis=0), np.full(shape[1], 15))


def test_sparse_nonzero_std():
    w = to_numpy(Sparse(connections=25, stddev=0.1, seed=7)((200, 200)))
    nonzero = w[w != 0]
    assert nonzero.size == 25 * 200
    np.testing.assert_allclose(nonzero.std(), 0.1, rtol=0.05)
    assert abs(nonzero.mean()) < 0.01
    # positions differ between columns (not the same rows for every unit)
    assert len({tuple(np.flatnonzero(w[:, j])) for j in range(200)}) > 190


def test_sparse_small_fan_in_is_dense():
    w = to_numpy(Sparse(connections=15, seed=1)((10, 6)))
    assert np.all(w != 0)


def test_sparse_seed_determinism():
    a = to_numpy(Sparse(15, seed=11)((30, 20)))
    b = to_numpy(Sparse(15, seed=11)((30, 20)))
    c = to_numpy(Sparse(15, seed=12)((30, 20)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    init = Sparse(15)  # unseeded: one seed drawn at construction, as Keras' own initializers
    np.testing.assert_array_equal(to_numpy(init((30, 20))), to_numpy(init((30, 20))))
    keras.utils.set_random_seed(5)
    d = to_numpy(Sparse(15)((30, 20)))
    keras.utils.set_random_seed(5)
    np.testing.assert_array_equal(d, to_numpy(Sparse(15)((30, 20))))
    generator = Sparse(15, seed=keras.random.SeedGenerator(4))
    assert not np.array_equal(to_numpy(generator((30, 20))), to_numpy(generator((30, 20))))


@pytest.mark.parametrize(
    "base", [Sparse(15, stddev=1.0, seed=2), "orthogonal", keras.initializers.RandomNormal(seed=1)]
)
def test_spectral_radius_square(base):
    w = to_numpy(SpectralRadius(base, radius=1.1)((50, 50)))
    assert w.dtype == np.float32
    assert abs(spectral_radius(w) - 1.1) < 1e-4


def test_spectral_radius_per_gate_block():
    w = to_numpy(SpectralRadius(Sparse(10, seed=4), radius=0.9)((12, 48)))
    for j in range(4):
        assert abs(spectral_radius(w[:, 12 * j : 12 * (j + 1)]) - 0.9) < 1e-4
    # each block is a rescaled copy of the base's block
    base = to_numpy(Sparse(10, seed=4)((12, 48)))
    np.testing.assert_array_equal(w != 0, base != 0)


def test_spectral_radius_bad_arguments():
    with pytest.raises(ValueError, match="radius"):
        SpectralRadius("orthogonal", radius=0.0)
    with pytest.raises(ValueError, match="base"):
        SpectralRadius("not_an_initializer")
    with pytest.raises(ValueError, match="shape"):
        SpectralRadius("orthogonal")((5, 7))
    with pytest.raises(ValueError, match="spectral radius 0"):
        SpectralRadius("zeros")((4, 4))
    with pytest.raises(ValueError, match="connections"):
        Sparse(0)
    with pytest.raises(ValueError, match="stddev"):
        Sparse(15, stddev=-1.0)
    with pytest.raises(ValueError, match="seed"):
        Sparse(15, seed="x")
    with pytest.raises(ValueError, match="shape"):
        Sparse(15)((3, 4, 5))


def test_serialization_round_trip():
    init = SpectralRadius(Sparse(25, stddev=0.01, seed=9), radius=1.0)
    config = keras.initializers.serialize(init)
    assert config["registered_name"] == "keras_rnnreg>SpectralRadius"
    restored = keras.initializers.deserialize(config)
    assert isinstance(restored.base, Sparse)
    assert (restored.base.connections, restored.base.stddev, restored.base.seed) == (25, 0.01, 9)
    np.testing.assert_array_equal(to_numpy(restored((20, 20))), to_numpy(init((20, 20))))
    sparse = keras.initializers.deserialize(keras.initializers.serialize(Sparse(5, seed=1)))
    np.testing.assert_array_equal(to_numpy(sparse((8, 3))), to_numpy(Sparse(5, seed=1)((8, 3))))


def test_in_layers_and_saved_model(tmp_path):
    from keras_rnnreg.layers import SimpleRNN

    inputs = keras.Input((5, 3))
    out = SimpleRNN(
        16,
        kernel_initializer=Sparse(15, stddev=0.1, seed=1),
        recurrent_initializer=SpectralRadius(Sparse(15, seed=2), 1.1),
    )(inputs)
    model = keras.Model(inputs, out)
    rnn = model.layers[1]
    assert abs(spectral_radius(to_numpy(rnn.recurrent_kernel)) - 1.1) < 1e-4
    np.testing.assert_array_equal((to_numpy(rnn.kernel) != 0).sum(0), np.full(16, 3))
    path = str(tmp_path / "init.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(model(x)), rtol=1e-6)
    assert isinstance(restored.layers[1].recurrent_initializer, SpectralRadius)
