"""state_regularizer= on the fused layers: the penalty is computed on the state sequence after
the loop (hidden states or LSTM memory cells), respects masks, and counts in fit / evaluate."""

import keras
import numpy as np
import pytest

from keras_rnnreg import layers
from keras_rnnreg.regularizers import NormStabilizer, state_penalty
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
