"""NormStabilizer and state_penalty: NumPy references for every cost, masks, fit on each backend;
AR / TAR (AWD-LSTM) against NumPy with and without masks."""

import keras
import numpy as np
import pytest

from keras_rnnreg.regularizers import (
    COSTS,
    ActivationRegularization,
    NormStabilizer,
    TemporalActivationRegularization,
    activation_penalty,
    state_penalty,
    temporal_activation_penalty,
)
from tests.conftest import to_numpy

B, T, U = 3, 6, 4


def _reference(seq, cost, mask=None, target=5.0):
    """Straightforward NumPy loops over sequences, pairs and steps."""
    seq = np.asarray(seq, dtype=np.float64)
    if mask is None:
        mask = np.ones(seq.shape[:2])
    l2 = np.linalg.norm(seq, axis=-1)
    l1 = np.abs(seq).sum(-1)
    values = []
    for b in range(seq.shape[0]):
        valid = [t for t in range(seq.shape[1]) if mask[b, t] > 0]
        if cost == "first_last":
            if valid:
                values.append((l2[b, valid[0]] - l2[b, valid[-1]]) ** 2)
            continue
        if cost == "target":
            values += [(l2[b, t] - target) ** 2 for t in valid]
            continue
        if cost == "squared_norm":
            values += [l2[b, t] ** 2 for t in valid]
            continue
        for t in range(1, seq.shape[1]):
            if not (mask[b, t] and mask[b, t - 1]):
                continue
            if cost == "norm_diff":
                values.append((l2[b, t] - l2[b, t - 1]) ** 2)
            elif cost == "state_diff":
                values.append(np.sum((seq[b, t] - seq[b, t - 1]) ** 2))
            elif cost == "relative":
                values.append(((l2[b, t] - l2[b, t - 1]) / l2[b, t]) ** 2)
            elif cost == "l1_norm_diff":
                values.append((l1[b, t] - l1[b, t - 1]) ** 2)
            elif cost == "abs_norm_diff":
                values.append(abs(l2[b, t] - l2[b, t - 1]))
    return float(np.mean(values)) if values else 0.0


def _sequence(seed=0):
    return np.random.default_rng(seed).normal(size=(B, T, U)).astype("float32")


def _masks():
    right = np.ones((B, T), "float32")
    right[0, 4:] = 0  # right-padded: 4 valid steps
    right[1, 1:] = 0  # a single valid step: no pair
    left = np.ones((B, T), "float32")
    left[0, :2] = 0  # left-padded
    left[2, :5] = 0  # one valid step
    return {"none": None, "right": right, "left": left}


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("mask_name", ["none", "right", "left"])
def test_state_penalty_matches_numpy(cost, mask_name):
    seq = _sequence()
    mask = _masks()[mask_name]
    if mask is not None:
        seq = seq * mask[..., None]  # padded steps output zeros, as the layers do
    got = to_numpy(state_penalty(seq, cost, mask=mask, target=2.0))
    np.testing.assert_allclose(got, _reference(seq, cost, mask, target=2.0), rtol=1e-5, atol=1e-6)


def test_penalty_scales_by_beta_and_unmasked_is_mean_over_t_minus_1_pairs():
    seq = _sequence(1)
    norms = np.linalg.norm(seq, axis=-1)
    expected = 7.5 * np.mean(np.diff(norms, axis=1) ** 2)  # B * (T - 1) terms
    got = to_numpy(NormStabilizer(7.5).penalty(seq))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_masked_padding_adds_nothing():
    seq = _sequence(2)
    mask = np.ones((B, T), "float32")
    mask[:, 4:] = 0
    garbage = seq.copy()
    garbage[:, 4:] = 100.0  # whatever sits in padded steps must not matter
    reg = NormStabilizer(1.0)
    np.testing.assert_allclose(
        to_numpy(reg.penalty(garbage, mask=mask)), to_numpy(reg.penalty(seq[:, :4])), rtol=1e-6
    )


def test_no_pair_gives_zero():
    seq = _sequence()[:, :1]
    assert float(to_numpy(state_penalty(seq, "norm_diff"))) == 0.0
    mask = np.zeros((B, T), "float32")
    assert float(to_numpy(state_penalty(_sequence(), "first_last", mask=mask))) == 0.0


@pytest.mark.parametrize("cost", COSTS)
def test_gradient_is_finite_at_zero_states(cost):
    seq = np.zeros((2, 4, 3), "float32")
    seq[0, 2:] = 0.5  # zero states next to nonzero ones
    x = keras.Variable(seq)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = state_penalty(x, cost)
        grad = tape.gradient(loss, x.value)
    elif keras.backend.backend() == "jax":
        import jax

        grad = jax.grad(lambda v: state_penalty(v, cost))(seq)
    else:
        import torch

        t = torch.tensor(seq, requires_grad=True)
        state_penalty(t, cost).backward()
        grad = t.grad
    assert np.all(np.isfinite(to_numpy(grad)))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="beta"):
        NormStabilizer(-1.0)
    with pytest.raises(ValueError, match="cost='l3'"):
        NormStabilizer(1.0, cost="l3")
    with pytest.raises(ValueError, match="on='gates'"):
        NormStabilizer(1.0, on="gates")
    with pytest.raises(ValueError, match="cost"):
        state_penalty(_sequence(), "bogus")
    with pytest.raises(ValueError, match="target"):
        NormStabilizer(1.0, target="five")


def test_serialization_round_trip():
    reg = NormStabilizer(50.0, cost="target", on="cell", target=3.0, name="ns")
    config = keras.saving.serialize_keras_object(reg)
    assert config["registered_name"] == "keras_rnnreg>NormStabilizer"
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, NormStabilizer)
    assert (restored.beta, restored.cost, restored.on, restored.target) == (50.0, "target",
                                                                           "cell", 3.0)
    seq = _sequence()
    np.testing.assert_allclose(to_numpy(restored.penalty(seq)), to_numpy(reg.penalty(seq)),
                               rtol=1e-6)


def _standalone_model(beta, cost="norm_diff"):
    inputs = keras.Input((T, 2))
    masked = keras.layers.Masking(0.0)(inputs)
    seq = keras.layers.SimpleRNN(U, return_sequences=True)(masked)
    seq = NormStabilizer(beta, cost=cost)(seq)
    outputs = keras.layers.Dense(1)(seq)
    return keras.Model(inputs, outputs)


def _left_padded_inputs():
    x = np.random.default_rng(3).normal(size=(4, T, 2)).astype("float32")
    x[0, :2] = 0.0
    x[1, :4] = 0.0
    return x


def test_standalone_layer_adds_penalty_and_keeps_input_and_mask():
    model = _standalone_model(10.0)
    x = _left_padded_inputs()
    model(x)
    assert len(model.losses) == 1
    # The NumPy reference on the RNN's own (masked) output sequence.
    rnn = model.layers[2]
    mask = (np.abs(x).sum(-1) > 0).astype("float32")
    seq = to_numpy(rnn(x, mask=mask))
    expected = 10.0 * _reference(seq, "norm_diff", mask)
    np.testing.assert_allclose(to_numpy(model.losses[0]), expected, rtol=1e-4, atol=1e-6)

    layer = NormStabilizer(1.0)
    y = layer(keras.ops.convert_to_tensor(seq))
    np.testing.assert_array_equal(to_numpy(y), seq)
    assert layer.compute_mask(seq, mask) is mask


def test_fit_includes_penalty():
    x = _left_padded_inputs()
    y = np.zeros((4, T, 1), "float32")
    model = _standalone_model(1000.0)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))

    baseline = _standalone_model(0.0)
    baseline.set_weights(model.get_weights())
    baseline.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    penalized = _standalone_model(1000.0)
    penalized.set_weights(model.get_weights())
    penalized.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    plain = baseline.evaluate(x, y, verbose=0)
    with_penalty = penalized.evaluate(x, y, verbose=0)
    penalized(x)
    penalty = float(to_numpy(penalized.losses[0]))
    assert penalty > 0
    np.testing.assert_allclose(with_penalty - plain, penalty, rtol=1e-3)


def test_saved_model_round_trip(tmp_path):
    model = _standalone_model(5.0, cost="relative")
    x = _left_padded_inputs()
    path = str(tmp_path / "ns.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(model(x)), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(restored.losses[0]), to_numpy(model.losses[0]), rtol=1e-6)


@pytest.mark.parametrize("on", ["hidden", "cell"])
def test_as_state_regularizer_of_the_recurrent_layers(on):
    from keras_rnnreg.layers import LSTM, SimpleRNN

    x = _left_padded_inputs()
    mask = (np.abs(x).sum(-1) > 0).astype("float32")
    if on == "hidden":
        layer = SimpleRNN(U, return_sequences=True, state_regularizer=NormStabilizer(3.0))
        seq = to_numpy(layer(x, mask=mask))
    else:
        layer = LSTM(U, return_sequences=True, return_cell_sequence=True,
                     state_regularizer=NormStabilizer(3.0, on="cell"))
        _, seq = layer(x, mask=mask)
        seq = to_numpy(seq)
    assert len(layer.losses) == 1
    expected = 3.0 * _reference(seq, "norm_diff", mask)
    np.testing.assert_allclose(to_numpy(layer.losses[0]), expected, rtol=1e-4, atol=1e-6)
    restored = type(layer).from_config(layer.get_config())
    assert isinstance(restored.state_regularizer, NormStabilizer)
    assert restored.state_regularizer.on == on


def test_state_regularizer_leaves_the_model_built():
    """An unbuilt NormStabilizer sublayer made every fit() / evaluate() / predict() redo Keras'
    symbolic build of the whole model (an extra forward pass per call on PyTorch): most of the
    norm-stabilizer's measured cost."""
    from keras_rnnreg.layers import LSTM

    regularizer = NormStabilizer(1.0)
    assert regularizer.built
    inputs = keras.Input((T, 3))
    outputs = LSTM(U, return_sequences=True, state_regularizer=regularizer)(inputs)
    model = keras.Model(inputs, outputs)
    assert all(layer.built for layer in model._flatten_layers())


# ------------------------------------------------------------------------- AR / TAR (AWD-LSTM)
def _reference_ar_tar(seq, kind, mask=None):
    """NumPy loops: AR over valid steps, TAR over pairs of valid steps; means over the units."""
    seq = np.asarray(seq, dtype=np.float64)
    if mask is None:
        mask = np.ones(seq.shape[:2])
    values = []
    for b in range(seq.shape[0]):
        for t in range(seq.shape[1]):
            if kind == "ar" and mask[b, t]:
                values.append(np.mean(seq[b, t] ** 2))
            if kind == "tar" and t > 0 and mask[b, t] and mask[b, t - 1]:
                values.append(np.mean((seq[b, t] - seq[b, t - 1]) ** 2))
    return float(np.mean(values)) if values else 0.0


@pytest.mark.parametrize("kind", ["ar", "tar"])
@pytest.mark.parametrize("mask_name", ["none", "right", "left"])
def test_ar_tar_match_numpy(kind, mask_name):
    seq = _sequence(4)
    mask = _masks()[mask_name]
    if mask is not None:
        seq = np.where(mask[..., None] > 0, seq, 100.0).astype("float32")  # padding must not count
    reg = ActivationRegularization(2.0) if kind == "ar" else TemporalActivationRegularization(0.5)
    weight = 2.0 if kind == "ar" else 0.5
    got = to_numpy(reg.penalty(seq, mask=mask))
    expected = weight * _reference_ar_tar(seq, kind, mask)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_ar_tar_unmasked_are_awd_lstm_formulas():
    seq = _sequence(5)
    np.testing.assert_allclose(to_numpy(ActivationRegularization(2.0).penalty(seq)),
                               2.0 * np.mean(seq**2), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(TemporalActivationRegularization(1.0).penalty(seq)),
                               np.mean((seq[:, 1:] - seq[:, :-1]) ** 2), rtol=1e-5)
    assert float(to_numpy(temporal_activation_penalty(seq[:, :1]))) == 0.0
    assert float(to_numpy(activation_penalty(seq, mask=np.zeros((B, T))))) == 0.0


def test_ar_tar_arguments_and_serialization():
    with pytest.raises(ValueError, match="alpha"):
        ActivationRegularization(-1.0)
    with pytest.raises(ValueError, match="beta"):
        TemporalActivationRegularization("one")
    with pytest.raises(ValueError, match="on='gates'"):
        TemporalActivationRegularization(1.0, on="gates")
    seq = _sequence()
    for reg, name in (
        (ActivationRegularization(3.0, on="cell"), "ActivationRegularization"),
        (TemporalActivationRegularization(0.25), "TemporalActivationRegularization"),
    ):
        config = keras.saving.serialize_keras_object(reg)
        assert config["registered_name"] == f"keras_rnnreg>{name}"
        restored = keras.saving.deserialize_keras_object(config)
        assert type(restored) is type(reg) and restored.on == reg.on
        assert restored.get_config() == reg.get_config()
        np.testing.assert_allclose(to_numpy(restored.penalty(seq)), to_numpy(reg.penalty(seq)),
                                   rtol=1e-6)
    assert ActivationRegularization(3.0).alpha == 3.0
    assert TemporalActivationRegularization(0.25).beta == 0.25


@pytest.mark.parametrize("cls", ["ar", "tar"])
def test_ar_tar_standalone_layer_with_mask_and_save(cls, tmp_path):
    penalty_cls = ActivationRegularization if cls == "ar" else TemporalActivationRegularization
    inputs = keras.Input((T, 2))
    masked = keras.layers.Masking(0.0)(inputs)
    seq = keras.layers.SimpleRNN(U, return_sequences=True)(masked)
    seq = penalty_cls(4.0)(seq)
    model = keras.Model(inputs, keras.layers.Dense(1)(seq))
    x = _left_padded_inputs()
    model(x)
    assert len(model.losses) == 1
    mask = (np.abs(x).sum(-1) > 0).astype("float32")
    hidden = to_numpy(model.layers[2](x, mask=mask))
    expected = 4.0 * _reference_ar_tar(hidden, cls, mask)
    np.testing.assert_allclose(to_numpy(model.losses[0]), expected, rtol=1e-4, atol=1e-7)
    path = str(tmp_path / f"{cls}.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(model(x)), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(restored.losses[0]), to_numpy(model.losses[0]), rtol=1e-6)
