"""keras_rnnreg.data.adding: the generator, its baselines, and fit on every backend."""

import keras
import numpy as np
import pytest

from keras_rnnreg.data import adding


def test_generate_shapes_markers_and_targets():
    x, y = adding.generate(64, seed=3)
    assert x.shape == (64, 400, 2) and y.shape == (64, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert ((x[..., 0] >= 0) & (x[..., 0] < 1)).all()
    markers = x[..., 1]
    assert set(np.unique(markers)) == {0.0, 1.0}
    assert (markers.sum(axis=1) == 2).all()
    assert (markers[:, :200].sum(axis=1) == 1).all()  # one marker in each half
    assert (markers[:, 200:].sum(axis=1) == 1).all()
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * markers).sum(axis=1), rtol=1e-6)


def test_generate_is_seeded():
    a, b, c = adding.generate(8, 20, seed=1), adding.generate(8, 20, seed=1), adding.generate(8, 20)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(ValueError, match="length"):
        adding.generate(4, length=1)
    with pytest.raises(ValueError, match="argument n=0"):
        adding.generate(0)


def test_baselines_match_their_expected_values():
    x, y = adding.generate(40000, length=10, seed=0)
    result = adding.baselines(x, y)
    assert adding.CONSTANT_BASELINE_MSE == pytest.approx(1 / 6)
    assert adding.SHORT_SIGHTED_BASELINE_MSE == pytest.approx(1 / 12)
    assert result["constant"] == pytest.approx(1 / 6, rel=0.03)
    assert result["short_sighted"] == pytest.approx(1 / 12, rel=0.03)
    assert result["expected_short_sighted"] == 1 / 12
    with pytest.raises(ValueError, match="two marked positions"):
        adding.baselines(np.zeros((1, 5, 2)), np.zeros(1))


def test_pipeline_feeds_fit():
    ds = adding.make_dataset(64, batch_size=16, length=30, seed=0)
    x, y = ds[0]
    assert x.shape == (16, 30, 2) and y.shape == (16, 1)
    model = keras.Sequential(
        [keras.Input((None, 2)), keras.layers.SimpleRNN(8), keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(ds, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
