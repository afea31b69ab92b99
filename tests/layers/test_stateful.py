"""stateful=True as keras.layers.RNN: a stream cut into batches gives the outputs of one call on
the whole stream, under eager calls, model.predict and model.fit on every backend; reset_state,
.keras files, Bidirectional; and Keras' masked outputs (zero_output_for_mask) against NumPy."""

import keras
import numpy as np
import pytest

import keras_rnnreg
from tests.conftest import to_numpy, tolerance

L = keras_rnnreg.layers
CLASSES = {"simple_rnn": L.SimpleRNN, "lstm": L.LSTM}
B, T, F, N = 3, 8, 5, 4


def _stream(seed=0):
    return np.random.default_rng(seed).normal(size=(B, T, F)).astype("float32")


def _layer(cls_name, **kwargs):
    return CLASSES[cls_name](
        N, kernel_initializer=keras.initializers.GlorotUniform(seed=1),
        recurrent_initializer=keras.initializers.Orthogonal(seed=2), **kwargs
    )


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("go_backwards", [False, True])
def test_stream_in_chunks_equals_one_call(name, go_backwards):
    x = _stream()
    whole = _layer(name, return_sequences=True, go_backwards=go_backwards)
    chunked = _layer(name, return_sequences=True, go_backwards=go_backwards, stateful=True)
    whole(x)
    chunked(x[:, :4])
    chunked.set_weights(whole.get_weights())  # states are not weights: Keras' weight list
    assert len(chunked.get_weights()) == len(whole.get_weights()) == 3
    assert [v.name for v in chunked.states] == ["rnn_state"] * len(chunked.state_size)
    chunked.reset_state()
    # go_backwards processes each chunk backwards: the stream is the reversed chunk order.
    first, second = (x[:, 4:], x[:, :4]) if go_backwards else (x[:, :4], x[:, 4:])
    out = np.concatenate([to_numpy(chunked(first)), to_numpy(chunked(second))], axis=1)
    np.testing.assert_allclose(out, to_numpy(whole(x)), **tolerance())
    chunked.reset_states()
    np.testing.assert_allclose(to_numpy(chunked(first)), to_numpy(whole(x))[:, :4], **tolerance())


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_matches_keras_stateful_layer(name):
    keras_cls = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM}[name]
    x = _stream()
    ours = _layer(name, stateful=True, return_state=True)
    theirs = keras_cls(N, stateful=True, return_state=True)
    ours(x[:, :4])
    theirs(x[:, :4])
    ours.set_weights(theirs.get_weights())
    ours.reset_state()
    theirs.reset_state()
    for chunk in (x[:, :4], x[:, 4:]):
        for a, b in zip(ours(chunk), theirs(chunk)):
            np.testing.assert_allclose(to_numpy(a), to_numpy(b), **tolerance(cudnn=name == "lstm"))
    for a, b in zip(ours.states, theirs.states):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), **tolerance(cudnn=name == "lstm"))


def _model(name, **kwargs):
    return keras.Sequential(
        [keras.Input(batch_shape=(B, None, F)), _layer(name, stateful=True, name="rnn", **kwargs)]
    )


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_predict_and_fit_carry_the_states(name, tmp_path):
    x = _stream()
    model = _model(name, return_sequences=True)
    reference = keras.Sequential([keras.Input((None, F)), _layer(name, return_sequences=True)])
    reference.set_weights(model.get_weights())
    expected = to_numpy(reference(x))
    # predict (compiled on JAX / TensorFlow): the second chunk continues from the first.
    out = [model.predict(x[:, :4], batch_size=B, verbose=0),
           model.predict(x[:, 4:], batch_size=B, verbose=0)]
    np.testing.assert_allclose(np.concatenate(out, axis=1), expected, **tolerance())
    rnn = model.get_layer("rnn")
    np.testing.assert_allclose(to_numpy(rnn.states[0]), expected[:, -1], **tolerance())

    # .keras keeps the states: the reloaded model continues the stream.
    path = str(tmp_path / "stateful.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    after = model.predict(x[:, :2], batch_size=B, verbose=0)
    np.testing.assert_allclose(
        restored.predict(x[:, :2], batch_size=B, verbose=0), after, atol=1e-6
    )

    # fit updates them too, without PyTorch's in-place error in the backward pass.
    rnn.reset_state()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    model.fit(x[:, :4], np.zeros((B, 4, N), "float32"), batch_size=B, epochs=1, shuffle=False,
              verbose=0)
    np.testing.assert_allclose(to_numpy(rnn.states[0]), expected[:, 3], **tolerance())


def test_fixed_batch_size_required_and_checked():
    with pytest.raises(ValueError, match="stateful=True needs a fixed batch size"):
        keras.Sequential([keras.Input((T, F)), L.LSTM(N, stateful=True)])
    layer = L.LSTM(N, stateful=True)
    layer(_stream())
    with pytest.raises(ValueError, match="batch size 3"):
        layer(_stream()[:2])


@pytest.mark.parametrize("wrapper", [keras.layers.Bidirectional, L.Bidirectional])
def test_bidirectional_stateful(wrapper):
    x = _stream()
    layer = wrapper(_layer("lstm", stateful=True))
    out = to_numpy(layer(x))
    assert len(layer.states) == 4
    np.testing.assert_allclose(to_numpy(layer.states[0]), out[:, :N], atol=1e-6)
    assert not np.allclose(to_numpy(layer(x)), out)
    layer.reset_state()
    np.testing.assert_allclose(to_numpy(layer(x)), out, **tolerance())


def test_our_bidirectional_stateful_with_return_state():
    """keras.layers.Bidirectional 3.15 fails here in its compute_mask (a generator times 2)."""
    layer = L.Bidirectional(_layer("lstm", stateful=True, return_state=True))
    out, *states = layer(_stream())
    assert len(states) == 4
    for value, variable in zip(states, layer.states):
        np.testing.assert_allclose(to_numpy(value), to_numpy(variable), atol=1e-6)
    outputs = layer(keras.Input(batch_shape=(B, T, F)))
    assert len(outputs) == 5


@pytest.mark.parametrize("wrapper", [keras.layers.Bidirectional, L.Bidirectional])
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_bidirectional_return_state_functional(wrapper, name):
    """The crash of issue 11: Keras' Bidirectional reads the wrapped layer's ``states``."""
    inputs = keras.Input((T, F))
    outputs = wrapper(_layer(name, return_state=True))(inputs)
    model = keras.Model(inputs, outputs)
    assert len(model(_stream())) == 1 + 2 * (2 if name == "lstm" else 1)


# ------------------------------------------------------------------------------ masked outputs
def _numpy_simple_rnn(x, mask, h0, kernel, recurrent_kernel, bias, zero_output):
    """Keras' RNN under a mask (its TensorFlow / PyTorch backends): the state is carried over
    masked steps; a masked step outputs zeros (zero_output) or the previous output, which is zero
    before the first valid step; the last output is the last entry of the outputs."""
    h, prev, outs = h0, np.zeros_like(h0), []
    for t in range(x.shape[1]):
        m = mask[:, t : t + 1]
        new = np.tanh(x[:, t] @ kernel + h @ recurrent_kernel + bias)
        h = np.where(m, new, h)
        prev = np.where(m, new, 0.0 if zero_output else prev)
        outs.append(prev)
    return np.stack(outs, axis=1), h


@pytest.mark.parametrize("zero_output", [False, True])
def test_masked_outputs_as_keras(zero_output):
    x = _stream()
    mask = np.ones((B, T), bool)
    mask[0, :3] = False  # left padding
    mask[1, 2:5] = False  # a gap
    mask[2, 5:] = False  # right padding: the last output is zero with zero_output_for_mask
    h0 = np.full((B, N), 0.5, "float32")
    layer = _layer("simple_rnn", return_sequences=True, return_state=True,
                   zero_output_for_mask=zero_output)
    last_layer = _layer("simple_rnn", zero_output_for_mask=zero_output)
    seq, h = layer(x, mask=mask, initial_state=h0)
    last_layer(x)
    last_layer.set_weights(layer.get_weights())
    expected_seq, expected_h = _numpy_simple_rnn(x, mask, h0, *layer.get_weights(), zero_output)
    np.testing.assert_allclose(to_numpy(seq), expected_seq, **tolerance())
    np.testing.assert_allclose(to_numpy(h), expected_h, **tolerance())
    last = to_numpy(last_layer(x, mask=mask, initial_state=h0))
    np.testing.assert_allclose(last, expected_seq[:, -1], **tolerance())
    if keras.backend.backend() != "jax":  # Keras' JAX scan outputs h0 before the first valid step
        theirs = keras.layers.SimpleRNN(N, return_sequences=True, zero_output_for_mask=zero_output)
        theirs(x)
        theirs.set_weights(layer.get_weights())
        np.testing.assert_allclose(to_numpy(theirs(x, mask=mask, initial_state=h0)),
                                   expected_seq, **tolerance())


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_weights_of_a_stateless_model_load_into_a_stateful_one(name, tmp_path):
    """Train without state, generate with it: .weights.h5 files without states load (the states
    stay zero) and ones with states restore them."""
    x = _stream()
    trained = keras.Sequential([keras.Input((None, F)), _layer(name, return_sequences=True)])
    path = str(tmp_path / "trained.weights.h5")
    trained.save_weights(path)
    generator = _model(name, return_sequences=True)
    generator.load_weights(path)
    assert not np.any(to_numpy(generator.get_layer("rnn").states[0]))
    np.testing.assert_allclose(to_numpy(generator(x)), to_numpy(trained(x)), **tolerance())
    generator.save_weights(path)
    copy = _model(name, return_sequences=True)
    copy.load_weights(path)
    np.testing.assert_allclose(to_numpy(copy(x)), to_numpy(generator(x)), atol=1e-6)
