"""state_regularizer= on the fused layers: the penalty is computed on the state sequence after
the loop (hidden states or LSTM memory cells), respects masks, and counts in fit / evaluate;
AR / TAR, and lists of penalties (their sum, get_config, .keras files, the cuDNN rule)."""

import keras
import numpy as np
import pytest

from keras_rnnreg import layers
from keras_rnnreg.regularizers import (
    ActivationRegularization,
    NormStabilizer,
    TemporalActivationRegularization,
    state_penalty,
)
from tests.conftest import to_numpy


def _np_norm_diff(seq, mask):
    norms = np.linalg.norm(seq, axis=-1)
    pairs = mask[:, 1:] * mask[:, :-1]
    return float(((norms[:, 1:] - norms[:, :-1]) ** 2 * pairs).sum() / pairs.sum())


@pytest.mark.parametrize("on", ["hidden", "cell"])
def test_lstm_penalty_on_hidden_or_cell_with_mask(on):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7, 4)).astype("float32")
    mask = np.ones((3, 7), dtype=bool)
    mask[0, 5:] = False
    mask[1, :3] = False
    layer = layers.LSTM(5, state_regularizer=NormStabilizer(50.0, on=on), output_activation=None)
    probe = layers.LSTM(5, return_sequences=True, return_cell_sequence=True, output_activation=None)
    layer(x)
    probe(x)
    probe.set_weights(layer.get_weights())
    hs, cs = (to_numpy(s) for s in probe(x, mask=keras.ops.convert_to_tensor(mask)))
    layer(x, mask=keras.ops.convert_to_tensor(mask))
    assert len(layer.losses) == 1
    expected = 50.0 * _np_norm_diff(hs if on == "hidden" else cs, mask.astype("float32"))
    np.testing.assert_allclose(float(to_numpy(layer.losses[0])), expected, rtol=1e-5)


def test_simple_rnn_penalty_equals_state_penalty_on_the_output():
    x = np.random.default_rng(1).normal(size=(2, 6, 3)).astype("float32")
    layer = layers.SimpleRNN(4, activation="relu", return_sequences=True,
                             state_regularizer=NormStabilizer(2.0, cost="target"))
    out = layer(x)
    expected = 2.0 * to_numpy(state_penalty(out, cost="target"))
    np.testing.assert_allclose(float(to_numpy(layer.losses[0])), expected, rtol=1e-5)


def test_cell_penalty_on_simple_rnn_raises():
    with pytest.raises(ValueError, match="on='cell'"):
        layers.SimpleRNN(4, state_regularizer=NormStabilizer(1.0, on="cell"))


@pytest.mark.parametrize("cls,on", [(layers.SimpleRNN, "hidden"), (layers.LSTM, "cell")])
def test_fit_and_evaluate_count_the_penalty(cls, on):
    """Inside fit / evaluate the penalty is part of the loss (saving: harness.py)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 8, 3)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")

    def model(beta):
        inputs = keras.Input((8, 3))
        hidden = cls(6, state_regularizer=NormStabilizer(beta, on=on), name="rnn")(inputs)
        return keras.Model(inputs, keras.layers.Dense(1)(hidden))

    regularized, plain = model(10.0), model(0.0)
    plain.set_weights(regularized.get_weights())
    for m in (regularized, plain):
        m.compile(optimizer="sgd", loss="mse")
    difference = regularized.evaluate(x, y, verbose=0) - plain.evaluate(x, y, verbose=0)
    assert difference > 1e-4
    history = regularized.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def _masked_inputs(seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 7, 4)).astype("float32")
    mask = np.ones((3, 7), dtype=bool)
    mask[0, 5:] = False  # right-padded
    mask[1, :3] = False  # left-padded
    return x, mask


def _np_ar(seq, mask):
    return float((seq**2).mean(-1)[mask > 0].mean())


def _np_tar(seq, mask):
    pairs = mask[:, 1:] * mask[:, :-1]
    return float((((seq[:, 1:] - seq[:, :-1]) ** 2).mean(-1) * pairs).sum() / pairs.sum())


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("on", ["hidden", "cell"])
def test_lstm_ar_and_tar_equal_numpy_on_the_state_sequence(on, use_mask):
    x, mask = _masked_inputs()
    if not use_mask:
        mask = np.ones_like(mask)
    layer = layers.LSTM(5, state_regularizer=[ActivationRegularization(2.0, on=on),
                                              TemporalActivationRegularization(0.5, on=on)])
    probe = layers.LSTM(5, return_sequences=True, return_cell_sequence=True)
    layer(x)
    probe(x)
    probe.set_weights(layer.get_weights())
    kw = {"mask": keras.ops.convert_to_tensor(mask)} if use_mask else {}
    hs, cs = (to_numpy(s) for s in probe(x, **kw))
    layer(x, **kw)
    seq, m = (hs if on == "hidden" else cs), mask.astype("float32")
    assert len(layer.losses) == 2
    np.testing.assert_allclose(float(to_numpy(layer.losses[0])), 2.0 * _np_ar(seq, m), rtol=1e-5)
    np.testing.assert_allclose(float(to_numpy(layer.losses[1])), 0.5 * _np_tar(seq, m), rtol=1e-5)


def _penalties():
    return [NormStabilizer(50.0), TemporalActivationRegularization(1.0),
            ActivationRegularization(2.0, on="cell")]


@pytest.mark.parametrize("cls", [layers.SimpleRNN, layers.GRU, layers.LSTM])
def test_a_list_adds_the_sum_of_the_single_penalties(cls):
    x, mask = _masked_inputs(4)
    penalties = _penalties()
    if cls is not layers.LSTM:
        penalties = penalties[:2]
    combined = cls(5, state_regularizer=penalties)
    combined(x)
    total = 0.0
    for penalty in penalties:
        single = cls(5, state_regularizer=penalty)
        single(x)
        single.set_weights(combined.get_weights())
        single(x, mask=keras.ops.convert_to_tensor(mask))
        assert len(single.losses) == 1
        total += float(to_numpy(single.losses[0]))
    combined(x, mask=keras.ops.convert_to_tensor(mask))
    assert len(combined.losses) == len(penalties)
    got = sum(float(to_numpy(loss)) for loss in combined.losses)
    np.testing.assert_allclose(got, total, rtol=1e-5)


def test_a_list_round_trips_through_get_config_and_keras_files(tmp_path):
    inputs = keras.Input((7, 4))
    hidden = layers.LSTM(5, state_regularizer=_penalties(), name="rnn")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    config = model.get_layer("rnn").get_config()
    assert [c["class_name"] for c in config["state_regularizer"]] == [
        "NormStabilizer", "TemporalActivationRegularization", "ActivationRegularization"]
    restored_layer = layers.LSTM.from_config(config)
    assert [type(r) for r in restored_layer.state_regularizer] == [type(r) for r in _penalties()]
    assert restored_layer.state_regularizer[2].on == "cell"

    x, _ = _masked_inputs(5)
    y = np.zeros((3, 1), "float32")
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(x, y, epochs=1, batch_size=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = str(tmp_path / "list.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    regs = restored.get_layer("rnn").state_regularizer
    original = model.get_layer("rnn").state_regularizer
    assert [r.get_config() for r in regs] == [r.get_config() for r in original]
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(model(x)), rtol=1e-5, atol=1e-6)
    for got, want in zip(restored.losses, model.losses):
        np.testing.assert_allclose(float(to_numpy(got)), float(to_numpy(want)), rtol=1e-5)
    assert len(restored.losses) == 3


def test_cudnn_rule_for_lists_and_bad_entries():
    from keras_rnnreg.layers import _cudnn

    hidden_only = [NormStabilizer(50.0), TemporalActivationRegularization(1.0),
                   ActivationRegularization(2.0)]
    assert _cudnn.config_reason(layers.LSTM(4, state_regularizer=hidden_only)) is None
    assert _cudnn.config_reason(layers.GRU(4, state_regularizer=hidden_only)) is None
    with_cell = hidden_only + [TemporalActivationRegularization(1.0, on="cell")]
    assert "on='cell'" in _cudnn.config_reason(layers.LSTM(4, state_regularizer=with_cell))
    with pytest.raises(ValueError, match="on='cell'"):
        layers.GRU(4, state_regularizer=[TemporalActivationRegularization(1.0, on="cell")])
    with pytest.raises(ValueError, match="state_regularizer"):
        layers.LSTM(4, state_regularizer=[NormStabilizer(1.0), "l2"])
    assert layers.LSTM(4, state_regularizer=[]).state_regularizer is None


def test_bidirectional_adds_each_penalty_of_each_direction():
    x, _ = _masked_inputs(6)
    bi = layers.Bidirectional(layers.LSTM(
        3, return_sequences=True,
        state_regularizer=[NormStabilizer(5.0), TemporalActivationRegularization(1.0)]))
    bi(x)
    assert len(bi.losses) == 4
    restored = layers.Bidirectional.from_config(bi.get_config())
    assert len(restored.forward_layer.state_regularizer) == 2
    assert len(restored.backward_layer.state_regularizer) == 2
