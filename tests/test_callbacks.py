"""SpectralRadiusLogger, hidden_norms and HiddenNormProbe."""

import csv

import keras
import numpy as np
import pytest

from keras_rnnreg.callbacks import (
    HiddenNormProbe,
    SpectralRadiusLogger,
    TensorBoardScalars,
    hidden_norms,
    hidden_sequences,
    recurrent_layers,
    spectral_radii,
    tensorboard_available,
)
from keras_rnnreg.layers import LSTM, SimpleRNN
from tests.conftest import to_numpy

T, F = 5, 3


def _radius(w):
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(w, np.float64)))))


def _model():
    inputs = keras.Input((T, F))
    h = SimpleRNN(4, return_sequences=True, name="rnn")(inputs)
    h = keras.layers.Bidirectional(keras.layers.SimpleRNN(3, return_sequences=True), name="bi")(h)
    h = LSTM(2, return_sequences=True, name="lstm")(h)
    h = keras.layers.GRU(2, name="gru")(h)
    return keras.Model(inputs, keras.layers.Dense(1)(h))


def _data(n=8, length=T, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, length, F)).astype("float32"), rng.normal(size=(n, 1)).astype(
        "float32"
    )


def test_spectral_radius_logger_writes_logs_and_csv(tmp_path):
    model = _model()
    assert sorted(recurrent_layers(model)) == ["bi/backward", "bi/forward", "gru", "lstm", "rnn"]
    model.compile(optimizer="sgd", loss="mse")
    x, y = _data()
    path = str(tmp_path / "log.csv")
    history = model.fit(
        x,
        y,
        epochs=2,
        batch_size=4,
        verbose=0,
        callbacks=[SpectralRadiusLogger(), keras.callbacks.CSVLogger(path)],
    )
    logs = history.history
    expected = {
        "spectral_radius/rnn": _radius(to_numpy(model.get_layer("rnn").recurrent_kernel)),
        "spectral_radius/bi/forward": _radius(
            to_numpy(model.get_layer("bi").forward_layer.cell.recurrent_kernel)
        ),
        "spectral_radius/bi/backward": _radius(
            to_numpy(model.get_layer("bi").backward_layer.cell.recurrent_kernel)
        ),
    }
    u = to_numpy(model.get_layer("lstm").recurrent_kernel)
    for j, gate in enumerate("ifco"):
        expected[f"spectral_radius/lstm/{gate}"] = _radius(u[:, 2 * j : 2 * j + 2])
    g = to_numpy(model.get_layer("gru").cell.recurrent_kernel)
    for j, gate in enumerate("zrh"):
        expected[f"spectral_radius/gru/{gate}"] = _radius(g[:, 2 * j : 2 * j + 2])
    for key, value in expected.items():
        assert len(logs[key]) == 2
        np.testing.assert_allclose(logs[key][-1], value, rtol=1e-6)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    np.testing.assert_allclose(
        float(rows[-1]["spectral_radius/rnn"]), expected["spectral_radius/rnn"], rtol=1e-6
    )


def test_spectral_radii_of_a_diverged_kernel_are_nan():
    """Training logs every epoch, also one NaNRestart throws away: NaN, not a LinAlgError."""
    w = np.eye(3)
    assert spectral_radii(w) == pytest.approx(1.0)
    assert np.isnan(spectral_radii(np.full((3, 3), np.nan)))
    stacked = np.concatenate([w, np.full((3, 3), np.inf)], axis=1)
    radii = spectral_radii(stacked)
    assert radii[0] == pytest.approx(1.0) and np.isnan(radii[1])


def test_spectral_radius_logger_selection_and_errors():
    model = _model()
    logger = SpectralRadiusLogger(layers=["rnn", "bi"])
    logger.set_model(model)
    assert sorted(logger.radii()) == [
        "spectral_radius/bi/backward",
        "spectral_radius/bi/forward",
        "spectral_radius/rnn",
    ]
    bad = SpectralRadiusLogger(layers="nope")
    bad.set_model(model)
    with pytest.raises(ValueError, match="'nope'"):
        bad.radii()
    with pytest.raises(ValueError, match="shape"):
        spectral_radii(np.ones((3, 4)))


def _reference_norms(layer, x, cells=False):
    """Run the layer itself (weights as trained) with return_sequences via a fresh Keras model."""
    config = layer.get_config()
    config.update(return_sequences=True, name="ref")
    if cells:
        config["return_cell_sequence"] = True
    ref = type(layer).from_config(config)
    ref.build(x.shape)
    ref.set_weights(layer.get_weights())
    out = ref(x)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [np.linalg.norm(to_numpy(o), axis=-1).mean(0) for o in outs]


def test_hidden_norms_on_a_layer_longer_than_training():
    layer = SimpleRNN(4, activation="relu", recurrent_initializer=keras.initializers.Identity(1.05))
    x, _ = _data(n=6, length=T)
    layer(x)  # built on length T
    long_x, _ = _data(n=6, length=40, seed=1)
    norms = hidden_norms(layer, long_x)
    assert norms.shape == (40,)
    np.testing.assert_allclose(norms, _reference_norms(layer, long_x)[0], rtol=1e-5)
    # chunked evaluation gives the same numbers
    np.testing.assert_allclose(hidden_norms(layer, long_x, batch_size=4), norms, rtol=1e-6)


def test_hidden_norms_lstm_cells_and_mask():
    layer = LSTM(3, output_activation=None)
    x, _ = _data(n=4)
    layer(x)
    hidden, cell = hidden_norms(layer, x, cells=True)
    ref_h, ref_c = _reference_norms(layer, x, cells=True)
    np.testing.assert_allclose(hidden, ref_h, rtol=1e-5)
    np.testing.assert_allclose(cell, ref_c, rtol=1e-5)
    h_seq, c_seq = hidden_sequences(layer, x, cells=True, batch_size=3)
    assert h_seq.shape == c_seq.shape == (4, T, 3) and h_seq.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(h_seq, axis=-1).mean(0), ref_h, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(c_seq, axis=-1).mean(0), ref_c, rtol=1e-5)
    mask = np.ones((4, T), "float32")
    mask[0, 3:] = 0
    masked = hidden_norms(layer, x, mask=mask)
    assert np.all(np.isfinite(masked))
    with pytest.raises(ValueError, match="return_cell_sequence"):
        hidden_norms(keras.layers.LSTM(2), x, cells=True)


def test_hidden_norms_through_a_model_uses_upstream_layers_and_masks():
    inputs = keras.Input((None, F))
    h = keras.layers.Masking(0.0)(inputs)
    h = keras.layers.Dense(5, name="proj")(h)
    h = SimpleRNN(4, name="rnn")(h)
    model = keras.Model(inputs, h)
    x, _ = _data(n=3, length=7)
    x[0, :3] = 0.0  # left padding
    norms = hidden_norms(model, x, layer_name="rnn")
    features = to_numpy(model.get_layer("proj")(x))
    layer = model.get_layer("rnn")
    config = layer.get_config()
    config.update(return_sequences=True, name="ref")
    ref = SimpleRNN.from_config(config)
    ref.build(features.shape)
    ref.set_weights(layer.get_weights())
    mask = np.abs(x).sum(-1) > 0
    expected = np.linalg.norm(to_numpy(ref(features, mask=mask)), axis=-1).mean(0)
    np.testing.assert_allclose(norms, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="layer_name='missing'"):
        hidden_norms(model, x, layer_name="missing")


def test_hidden_norm_probe_logs(tmp_path):
    inputs = keras.Input((T, F))
    h = LSTM(3, name="lstm", return_sequences=True)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(optimizer="sgd", loss="mse")
    x, _ = _data(n=8)
    y = np.zeros((8, T, 1), "float32")
    long_x, _ = _data(n=4, length=12, seed=2)
    probe = HiddenNormProbe(long_x, "lstm", every=2, cells=True)
    history = model.fit(x, y, epochs=4, batch_size=4, verbose=0, callbacks=[probe])
    assert sorted(probe.history) == [1, 3]
    hidden, cell = probe.history[3]
    ref_h, ref_c = _reference_norms(model.get_layer("lstm"), long_x, cells=True)
    np.testing.assert_allclose(hidden, ref_h, rtol=1e-5)
    np.testing.assert_allclose(cell, ref_c, rtol=1e-5)
    logs = history.history
    np.testing.assert_allclose(logs["hidden_norm/lstm/last"][-1], ref_h[-1], rtol=1e-5)
    np.testing.assert_allclose(
        logs["hidden_norm/lstm/at_training_length"][-1], ref_h[T - 1], rtol=1e-5
    )
    np.testing.assert_allclose(logs["cell_norm/lstm/last"][-1], ref_c[-1], rtol=1e-5)
    with pytest.raises(ValueError, match="every"):
        HiddenNormProbe(long_x, "lstm", every=0)


def test_hidden_norms_beyond_a_fixed_training_length_behind_other_layers():
    inputs = keras.Input((T, F))  # fixed time dimension
    h = keras.layers.Dense(4, name="proj")(inputs)
    h = SimpleRNN(
        4, activation="relu", recurrent_initializer=keras.initializers.Identity(), name="rnn"
    )(h)
    model = keras.Model(inputs, h)
    long_x, _ = _data(n=3, length=4 * T)
    norms = hidden_norms(model, long_x, layer_name="rnn")
    assert norms.shape == (4 * T,)
    features = to_numpy(model.get_layer("proj")(long_x))
    np.testing.assert_allclose(
        norms, _reference_norms(model.get_layer("rnn"), features)[0], rtol=1e-5
    )


def _events(folder):
    """{tag: [(step, value), ...]} of the scalar events in an event-file folder."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    out = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                number = float(tensor_util.make_ndarray(value.tensor))
                out.setdefault(value.tag, []).append((event.step, number))
    return out


def test_tensorboard_scalars_writes_keras_layout(tmp_path):
    pytest.importorskip("tensorboard")
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    x, y = _data()
    history = model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=2,
        batch_size=4,
        verbose=0,
        callbacks=[SpectralRadiusLogger(), TensorBoardScalars(tmp_path / "tb")],
    )
    train, valid = _events(tmp_path / "tb" / "train"), _events(tmp_path / "tb" / "validation")
    logs = history.history
    assert [s for s, _ in train["epoch_loss"]] == [0, 1]
    np.testing.assert_allclose([v for _, v in train["epoch_loss"]], logs["loss"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in valid["epoch_loss"]], logs["val_loss"], rtol=1e-6)
    np.testing.assert_allclose(
        train["epoch_spectral_radius/rnn"][-1][1], logs["spectral_radius/rnn"][-1], rtol=1e-6
    )


def test_tensorboard_scalars_without_the_package_says_how_to_install(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "tensorboard.summary", None)
    assert not tensorboard_available()
    with pytest.raises(ImportError, match=r"keras-rnnreg\[tensorboard\]"):
        TensorBoardScalars(tmp_path)
