"""Zoneout (Krueger et al. 2016) on SimpleRNN, GRU and LSTM: rate 0 is the plain layer, a
mask of ones keeps every state, the Monte-Carlo mean of training-mode steps is the inference
output, config / .keras round trips, masks, stateful, Bidirectional, WeightNoise, cuDNN rule."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_rnnreg import _backend, layers
from keras_rnnreg.layers.base import plan_call
from keras_rnnreg.perturbations import WeightNoise
from tests.gradients import value_and_grads

UNITS = 4


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def make(kind, zoneout, **kw):
    cls = {"simple_rnn": layers.SimpleRNN, "gru": layers.GRU, "lstm": layers.LSTM}[kind]
    return cls(UNITS, zoneout=zoneout, seed=3, **kw)


def rate(kind, z=0.3):
    return (z, z / 2) if kind == "lstm" else z


def initial_states(kind, batch, seed=0):
    rng = np.random.default_rng(seed)
    n = 2 if kind == "lstm" else 1
    return [rng.uniform(-0.8, 0.8, (batch, UNITS)).astype("float32") for _ in range(n)]


KINDS = ["simple_rnn", "gru", "lstm"]
X = np.random.default_rng(1).normal(size=(3, 6, 5)).astype("float32")


@pytest.mark.parametrize("kind", KINDS)
def test_rate_zero_is_plain_layer(kind):
    zoned = make(kind, 0.0, return_sequences=True)
    plain = make(kind, 0.0, return_sequences=True)
    plain = type(plain).from_config({**plain.get_config(), "zoneout": 0.0})
    zoned.build(X.shape)
    plain.build(X.shape)
    plain.set_weights(zoned.get_weights())
    np.testing.assert_allclose(
        to_numpy(zoned(X, training=True)), to_numpy(plain(X, training=True)), atol=1e-6
    )
    no_arg = type(plain)(UNITS, return_sequences=True)
    no_arg.build(X.shape)
    no_arg.set_weights(zoned.get_weights())
    np.testing.assert_allclose(
        to_numpy(zoned(X, training=True)), to_numpy(no_arg(X, training=True)), atol=1e-6
    )


@pytest.mark.parametrize("kind", KINDS)
def test_all_ones_mask_keeps_every_state(kind, monkeypatch):
    # The API takes rates < 1 (as dropout); the rate-1 case at the mask level: keep masks of 0
    # make every zoneout mask d_t = 1, so every state must stay its initial value.
    layer = make(kind, rate(kind, 0.5), return_sequences=True, return_state=True)
    init = initial_states(kind, X.shape[0])
    layer(X, initial_state=init, training=True)  # build
    monkeypatch.setattr(_backend, "keep_mask", lambda shape, z, dtype, _: ops.zeros(shape, dtype))
    out = layer(X, initial_state=init, training=True)
    seq, finals = out[0], out[1:]
    for final, start in zip(finals, init):
        np.testing.assert_allclose(to_numpy(final), start, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(seq), np.broadcast_to(init[0][:, None], seq.shape), atol=1e-6
    )


@pytest.mark.parametrize("rate", [0.05, 0.5])
def test_keep_mask_is_seeded_bernoulli(rate):
    shape = (41, 29, 25)  # an odd count: JAX splits 32-bit words into two 16-bit draws
    seed = keras.random.SeedGenerator(7)
    first = to_numpy(_backend.keep_mask(shape, rate, "float32", seed))
    second = to_numpy(_backend.keep_mask(shape, rate, "float32", seed))
    again = to_numpy(_backend.keep_mask(shape, rate, "float32", keras.random.SeedGenerator(7)))
    assert first.shape == shape and set(np.unique(first)) == {0.0, 1.0}
    # 29,725 draws: the mean's standard error is at most 0.003, the neighbours' correlation's 0.006
    assert abs(first.mean() - (1 - rate)) < 0.015
    flat = first.reshape(-1)[:-1]
    assert abs(np.corrcoef(flat[0::2], flat[1::2])[0, 1]) < 0.03
    np.testing.assert_array_equal(first, again)  # same seed, same masks
    assert not np.array_equal(first, second)  # each call advances the generator


@pytest.mark.parametrize("kind", KINDS)
def test_monte_carlo_mean_is_inference_output(kind):
    # One step from a nonzero state: E[d h_{t-1} + (1-d) h̃] = z h_{t-1} + (1-z) h̃ exactly,
    # so the mean over N draws is within a few standard errors: with |h_{t-1} - h̃| <= 2 and
    # N = 4000, 5 sigma <= 5 * sqrt(0.25 / 4000) * 2 ≈ 0.08; we use atol 0.05 on the mean of
    # 4000 independent draws (every example of a batch of 4000 copies is one draw).
    n = 4000
    layer = make(kind, rate(kind, 0.4), return_state=True)
    x1 = np.repeat(X[:1, :1], n, axis=0)
    init = [np.repeat(s[:1], n, axis=0) for s in initial_states(kind, 1)]
    train = layer(x1, initial_state=init, training=True)
    infer = layer(x1, initial_state=init, training=False)
    for a, b in zip(train[1:], infer[1:]):
        mean = to_numpy(a).mean(axis=0)
        expected = to_numpy(b)[0]
        np.testing.assert_allclose(mean, expected, atol=0.05)
        assert np.allclose(to_numpy(b), expected)  # inference: no randomness
    # and training mode is random: not every draw equals the mean
    assert not np.allclose(to_numpy(train[1]), to_numpy(infer[1]), atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_inference_is_the_expectation(kind):
    # h_t = z h_{t-1} + (1 - z) h̃_t per step, h̃_t from the plain layer's step.
    z = rate(kind, 0.4)
    layer = make(kind, z, return_state=True)
    plain = type(layer)(UNITS, return_state=True)
    init = initial_states(kind, X.shape[0])
    x1 = X[:, :1]
    layer(x1, initial_state=init)
    plain(x1, initial_state=init)
    plain.set_weights(layer.get_weights())
    zoned = [to_numpy(s) for s in layer(x1, initial_state=init)[1:]]
    tilde = [to_numpy(s) for s in plain(x1, initial_state=init)[1:]]
    # carry order h, c; the LSTM's c and h are zoned separately, both from the same step
    # (c̃_t, h̃_t = o ⊙ tanh(c̃_t)), as the paper's Eq. for LSTM zoneout.
    rates = (z[1], z[0]) if kind == "lstm" else (z,)
    for got, t, start, r in zip(zoned, tilde, init, rates):
        np.testing.assert_allclose(got, r * start + (1 - r) * t, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip_and_keras_file(kind, tmp_path):
    layer = make(kind, rate(kind), return_sequences=True)
    config = layer.get_config()
    assert config["zoneout"] == (list(rate(kind)) if kind == "lstm" else rate(kind))
    restored = type(layer).from_config(config)
    assert restored.zoneout == layer.zoneout
    inputs = keras.Input(X.shape[1:])
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
    path = str(tmp_path / "zoneout.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        to_numpy(model(X, training=False)), to_numpy(reloaded(X, training=False)), atol=1e-6
    )


def test_validation():
    for bad in (1.0, -0.1, "0.5", True, None):
        with pytest.raises(ValueError, match="zoneout"):
            layers.GRU(3, zoneout=bad)
    with pytest.raises(ValueError, match="cell_rate, hidden_rate"):
        layers.LSTM(3, zoneout=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="zoneout"):
        layers.SimpleRNN(3, zoneout=(0.1, 0.2))
    with pytest.raises(ValueError, match="zoneout"):
        layers.FastDropoutRNN(3, zoneout=0.2)


@pytest.mark.parametrize("kind", KINDS)
def test_masked_step_keeps_state(kind):
    mask = np.ones(X.shape[:2], dtype=bool)
    mask[:, 2] = False
    mask[1, 4:] = False
    layer = make(kind, rate(kind, 0.5), return_sequences=True, zero_output_for_mask=False,
                 return_state=True)
    init = initial_states(kind, X.shape[0])
    for training in (True, False):
        seq = to_numpy(layer(X, initial_state=init, mask=ops.convert_to_tensor(mask),
                             training=training)[0])
        np.testing.assert_allclose(seq[:, 2], seq[:, 1], atol=1e-6)
        np.testing.assert_allclose(seq[1, 5], seq[1, 3], atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_stateful(kind):
    batch = X.shape[0]
    layer = make(kind, rate(kind), stateful=True, return_state=True)
    inputs = keras.Input(batch_shape=(batch,) + X.shape[1:])
    model = keras.Model(inputs, layer(inputs))
    first = model(X, training=False)
    for variable, final in zip(layer.states, first[1:]):
        np.testing.assert_allclose(to_numpy(variable.value), to_numpy(final), atol=1e-6)
    second = model(X, training=False)
    assert not np.allclose(to_numpy(first[0]), to_numpy(second[0]))
    layer.reset_state()
    np.testing.assert_allclose(
        to_numpy(model(X, training=False)[0]), to_numpy(first[0]), atol=1e-6
    )
    model(X, training=True)  # training mode runs with the state variables


@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_and_weight_noise(kind, tmp_path):
    inner = make(kind, rate(kind), return_sequences=True,
                 perturbations=[WeightNoise(0.075, per="sequence")])
    bi = layers.Bidirectional(inner)
    inputs = keras.Input(X.shape[1:])
    model = keras.Model(inputs, keras.layers.Dense(1)(bi(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X, np.zeros(X.shape[:2] + (1,), "float32"), epochs=1, verbose=0)
    train = to_numpy(model(X, training=True))
    assert np.all(np.isfinite(train))
    assert bi.forward_layer.zoneout == inner.zoneout
    assert bi.backward_layer.zoneout == inner.zoneout
    path = str(tmp_path / "bi.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        to_numpy(model(X, training=False)), to_numpy(reloaded(X, training=False)), atol=1e-6
    )


@pytest.mark.parametrize("kind", KINDS)
def test_with_state_regularizer(kind):
    from keras_rnnreg.regularizers import NormStabilizer, TemporalActivationRegularization

    layer = make(kind, rate(kind), return_sequences=True,
                 state_regularizer=[NormStabilizer(50.0), TemporalActivationRegularization(1.0)])
    layer(X, training=True)
    assert len(layer.losses) == 2
    assert all(np.isfinite(to_numpy(loss)) for loss in layer.losses)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_cudnn_reason_mentions_zoneout(kind):
    for training in (True, False):
        taken, reason = layers.cudnn_path(make(kind, rate(kind)), training=training)
        assert not taken and "zoneout" in reason
    with pytest.raises(ValueError, match="zoneout"):
        make(kind, rate(kind), use_cudnn=True)


class _Wrapped(keras.layers.Layer):
    """A Dense before the layer and trainable initial states, so that the gradients of the
    projected inputs and of the initial states show up as weight gradients."""

    def __init__(self, rnn, training):
        super().__init__()
        self.pre, self.rnn, self.training_mode = keras.layers.Dense(4), rnn, training
        self.supports_masking = True

    def build(self, input_shape):
        self.pre.build(input_shape)
        self.initial = [self.add_weight(shape=(1, UNITS), initializer="random_normal")
                        for _ in self.rnn.state_size]
        self.rnn.build(tuple(input_shape[:-1]) + (4,))

    def call(self, x, mask=None):
        states = [ops.broadcast_to(s, (ops.shape(x)[0], UNITS)) for s in self.initial]
        return self.rnn(self.pre(x), initial_state=states, mask=mask,
                        training=self.training_mode)


HAND_WRITTEN_CASES = [("simple_rnn", 0.3), ("gru", 0.3), ("lstm", (0.5, 0.0)),
                      ("lstm", (0.0, 0.4)), ("lstm", (0.5, 0.3))]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("perturbation", [None, "sequence", "timestep"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("kind,z", HAND_WRITTEN_CASES)
def test_hand_written_backward_matches_autodiff(kind, z, masked, perturbation, training,
                                                monkeypatch):
    """Zoneout (and a Keras mask) in the hand-written backward pass of layers/_steps.py: the
    outputs, final states and gradients of the weights, initial states and inputs are those of
    autodiff through the scan, with the same draws (the LSTM with a cell rate, a hidden rate and
    both). At inference (zoneout's expectation: fractional gates) the plan takes autodiff."""
    x = np.random.default_rng(2).normal(size=(3, 7, 5)).astype("float32")
    kw = {}
    if perturbation:
        kw["perturbations"] = [WeightNoise(0.2, per=perturbation)]
    wrapped = {}
    for manual in (True, False):
        rnn = make(kind, z, return_sequences=True, return_state=True,
                   bias_initializer="random_normal", **kw)
        monkeypatch.setattr(rnn, "_manual_backward", lambda v=manual: v)
        monkeypatch.setattr(rnn, "_projects_in_loop", lambda: False)
        wrapped[manual] = _Wrapped(rnn, training)
        wrapped[manual].build(x.shape)
    wrapped[True].set_weights(wrapped[False].get_weights())
    mask = None
    if masked:
        mask = np.ones((3, 7), dtype=bool)
        mask[0, :2] = mask[1, 3:5] = mask[2, 6] = False
        mask = ops.convert_to_tensor(mask)
    out_a, grads_a = value_and_grads(wrapped[False], x, mask=mask)
    out_m, grads_m = value_and_grads(wrapped[True], x, mask=mask)
    np.testing.assert_allclose(out_m, out_a, atol=1e-5)
    assert len(grads_m) == len(grads_a) == len(wrapped[True].trainable_variables)
    for g_m, g_a in zip(grads_m, grads_a):
        np.testing.assert_allclose(g_m, g_a, atol=1e-5)
    rnn = wrapped[True].rnn  # (after the calls: drawing the weights moves the seed)
    assert plan_call(rnn, training, None, rnn._weights(training, 7)).manual_backward is training
