"""LayerNormLSTM / LayerNormGRU and their cells (Ba et al. 2016): NumPy reference forward and
finite-difference gradients (with a mask), cells equal layers, perturbations before the
normalization, stateful, Bidirectional, the cuDNN reason, the layer harness, and the issue's
configuration (zoneout + perturbation + penalties) through fit, save and reload."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_rnnreg import layers as L
from keras_rnnreg.layers.base import state_regularizer_list
from keras_rnnreg.perturbations import DropConnect, Perturbation, WeightNoise
from keras_rnnreg.regularizers import NormStabilizer, TemporalActivationRegularization
from tests.conftest import to_numpy, tolerance
from tests.gradients import value_and_grads
from tests.layers.harness import run_layer_test

B, T, F, N = 2, 4, 3, 3
EPS = 1e-3
KINDS = ["lstm", "gru"]
LAYERS = {"lstm": L.LayerNormLSTM, "gru": L.LayerNormGRU}
CELLS = {"lstm": L.LayerNormLSTMCell, "gru": L.LayerNormGRUCell}
X = np.random.default_rng(1).normal(size=(B, T, F)).astype("float32")
MASK = np.array([[True] * T, [False, True, False, True]])  # row 1: left padding and a gap


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _ln(a, gain):
    centered = a - a.mean(-1, keepdims=True)
    return gain * centered / np.sqrt((centered**2).mean(-1, keepdims=True) + EPS)


def np_forward(kind, x, weights, mask=None):
    """(hidden sequence, cell sequence or None) of the paper's equations, float64, zero initial
    states; masked steps keep the state (the outputs then repeat it, as the layers' with
    zero_output_for_mask=False)."""
    w = [np.asarray(v, "float64") for v in weights]
    h = np.zeros((x.shape[0], N))
    c = np.zeros_like(h)
    hs, cs = [], []
    for t in range(x.shape[1]):
        if kind == "lstm":
            kernel, recurrent, bias, gx, gh, gc, bc = w
            z = _ln(x[:, t] @ kernel, gx) + _ln(h @ recurrent, gh) + bias
            i, f, g, o = np.split(z, 4, axis=-1)
            c_new = _sig(f) * c + _sig(i) * np.tanh(g)
            h_new = _sig(o) * np.tanh(_ln(c_new, gc) + bc)
        else:
            kernel, recurrent, bias, gx, gh = w
            pz, pr, ph = np.split(_ln(x[:, t] @ kernel, gx) + bias[0], 3, axis=-1)
            az, ar, ah = np.split(_ln(h @ recurrent, gh) + bias[1], 3, axis=-1)
            z, r = _sig(pz + az), _sig(pr + ar)
            h_new, c_new = z * h + (1 - z) * np.tanh(ph + r * ah), c
        m = 1.0 if mask is None else mask[:, t, None].astype("float64")
        h, c = h + m * (h_new - h), c + m * (c_new - c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs, 1), (np.stack(cs, 1) if kind == "lstm" else None)


def randomize(layer, seed=0):
    """Weights away from their initial values (gains ≠ 1, biases ≠ 0), so that every term of the
    equations shows."""
    rng = np.random.default_rng(seed)
    layer.set_weights([
        (1.0 if "gamma" in w.path else 0.0) + 0.5 * rng.normal(size=w.shape).astype("float32")
        for w in layer.weights
    ])
    return [to_numpy(w) for w in layer.weights]


def built(kind, x=X, **kwargs):
    layer = LAYERS[kind](N, **kwargs)
    layer.build(x.shape)
    return layer, randomize(layer)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("masked", [False, True])
def test_forward_and_gradients_against_numpy(kind, masked):
    layer, weights = built(kind, return_sequences=True)
    mask = MASK if masked else None
    kwargs = {} if mask is None else {"mask": ops.convert_to_tensor(mask)}
    out, grads = value_and_grads(layer, X, **kwargs)
    ref, _ = np_forward(kind, X.astype("float64"), weights, mask)
    np.testing.assert_allclose(out, ref.reshape(B, -1), **tolerance())
    # The helper's loss, sum(flat(out) * sin(...)), by central differences on the NumPy model.
    coef = np.sin(np.arange(T * N) * 0.37 + 0.1)

    def loss(ws):
        return float((np_forward(kind, X.astype("float64"), ws, mask)[0].reshape(B, -1)
                      * coef).sum())

    names = [v.path for v in layer.trainable_variables]
    assert len(grads) == len(weights) == (7 if kind == "lstm" else 5)
    for k, (weight, grad) in enumerate(zip(weights, grads)):
        numeric = np.zeros(weight.shape)
        for index in np.ndindex(weight.shape):
            ws = [np.asarray(w, "float64").copy() for w in weights]
            ws[k][index] += 1e-6
            up = loss(ws)
            ws[k][index] -= 2e-6
            numeric[index] = (up - loss(ws)) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=2e-4, err_msg=names[k])


def test_cell_sequence_and_states_against_numpy():
    layer, weights = built("lstm", return_sequences=True, return_cell_sequence=True,
                           return_state=True)
    hs, cs, h, c = (to_numpy(o) for o in layer(X, mask=ops.convert_to_tensor(MASK)))
    ref_h, ref_c = np_forward("lstm", X.astype("float64"), weights, MASK)
    for got, ref in ((hs, ref_h), (cs, ref_c), (h, ref_h[:, -1]), (c, ref_c[:, -1])):
        np.testing.assert_allclose(got, ref, **tolerance())


@pytest.mark.parametrize("kind", KINDS)
def test_cells_compute_the_layers(kind):
    layer, weights = built(kind, return_sequences=True)
    rnn = keras.layers.RNN(CELLS[kind](N), return_sequences=True)
    rnn.build(X.shape)
    rnn.set_weights(weights)
    assert [w.path.split("/")[-1] for w in rnn.weights] == [
        w.path.split("/")[-1] for w in layer.weights
    ]
    np.testing.assert_allclose(to_numpy(rnn(X)), to_numpy(layer(X)), **tolerance())


class _Shift(Perturbation):
    """A deterministic 'perturbation' (W + 0.1): shows where the perturbed kernels enter."""

    def _apply(self, weight, shape, seed_generator):
        return weight + 0.1 * ops.ones(shape, dtype=weight.dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("per", ["timestep", "sequence"])
def test_perturbed_kernels_are_normalized(kind, per):
    layer, weights = built(kind, return_sequences=True, perturbations=[_Shift(per, "both")])
    shifted = [w + 0.1 if i < 2 else w for i, w in enumerate(weights)]
    ref, _ = np_forward(kind, X.astype("float64"), shifted)
    np.testing.assert_allclose(to_numpy(layer(X, training=True)), ref, **tolerance())
    clean, _ = np_forward(kind, X.astype("float64"), weights)
    np.testing.assert_allclose(to_numpy(layer(X, training=False)), clean, **tolerance())


@pytest.mark.parametrize("kind", KINDS)
def test_local_noise_is_inside_the_normalization(kind, monkeypatch):
    # With every normal draw 1, additive local noise on x W (and h U) is sqrt(Σ_i x_i²) σ, the
    # same for every unit: LN removes it, so training equals inference exactly when the noise is
    # added before the normalization (and not when after it).
    layer, _ = built(kind, return_sequences=True, perturbations=[
        WeightNoise(0.5, per="timestep", target="both", sampling="local")])
    monkeypatch.setattr(keras.random, "normal", lambda shape, **kw: ops.ones(shape, kw["dtype"]))
    np.testing.assert_allclose(to_numpy(layer(X, training=True)), to_numpy(layer(X)), atol=1e-5)


PERTURBATIONS = [
    WeightNoise(0.1, per="timestep"),
    WeightNoise(0.1, mode="multiplicative", per="sequence", target="both"),
    DropConnect(0.3, per="timestep"),
    DropConnect(0.3, per="sequence", target="input", scale="inference"),
    WeightNoise(0.1, per="timestep", target="both", sampling="local"),
    DropConnect(0.3, per="timestep", sampling="local"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("perturbation", PERTURBATIONS, ids=repr)
def test_every_perturbation(kind, perturbation):
    layer, weights = built(kind, return_sequences=True, perturbations=[perturbation], seed=5)
    train, grads = value_and_grads(layer, X, training=True)
    assert np.all(np.isfinite(train)) and all(np.all(np.isfinite(g)) for g in grads)
    infer = to_numpy(layer(X))
    assert not np.allclose(train.reshape(infer.shape), infer, atol=1e-4)
    if getattr(perturbation, "scale", True) is True:  # inference: the clean weights
        np.testing.assert_allclose(infer, np_forward(kind, X.astype("float64"), weights)[0],
                                   **tolerance())


@pytest.mark.parametrize("kind", KINDS)
def test_stateful_in_chunks_equals_one_call(kind):
    whole, weights = built(kind, return_sequences=True)
    layer = LAYERS[kind](N, return_sequences=True, stateful=True)
    layer.build(X.shape)
    layer.set_weights(weights)
    expected = to_numpy(whole(X))
    for _ in range(2):
        chunks = [to_numpy(layer(X[:, :2])), to_numpy(layer(X[:, 2:]))]
        np.testing.assert_allclose(np.concatenate(chunks, axis=1), expected, **tolerance())
        layer.reset_state()


@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_against_numpy(kind):
    bi = L.Bidirectional(LAYERS[kind](N, return_sequences=True))
    bi.build(X.shape)
    fwd = randomize(bi.forward_layer, seed=1)
    bwd = randomize(bi.backward_layer, seed=2)
    x = X.astype("float64")
    ref = np.concatenate(
        [np_forward(kind, x, fwd)[0], np_forward(kind, x[:, ::-1], bwd)[0][:, ::-1]], axis=-1
    )
    np.testing.assert_allclose(to_numpy(bi(X)), ref, **tolerance())


@pytest.mark.parametrize("kind", KINDS)
def test_never_cudnn_and_says_why(kind):
    for kwargs in ({}, {"zoneout": 0.2}):
        for training in (True, False):
            taken, reason = L.cudnn_path(LAYERS[kind](N, **kwargs), training=training)
            assert not taken
            assert ("zoneout" if kwargs else "layer normalization") in reason
    with pytest.raises(ValueError, match="layer normalization"):
        LAYERS[kind](N, use_cudnn=True)
    assert LAYERS[kind](N, use_cudnn=False)._manual_backward() is False  # autodiff through our loop


def test_bad_arguments():
    with pytest.raises(ValueError, match="reset_after"):
        L.LayerNormGRU(N, reset_after=False)
    with pytest.raises(ValueError, match="reset_after"):
        L.LayerNormGRUCell(N, reset_after=False)
    for cls in (*LAYERS.values(), *CELLS.values()):
        with pytest.raises(ValueError, match="layer_norm_epsilon"):
            cls(N, layer_norm_epsilon=0.0)


@pytest.mark.parametrize(
    "make, num_losses",
    [
        (lambda: L.LayerNormLSTM(4, return_sequences=True, kernel_regularizer="l2",
                                 state_regularizer=NormStabilizer(1.0), layer_norm_epsilon=1e-4),
         2),
        (lambda: L.LayerNormLSTM(4, return_state=True, return_cell_sequence=True,
                                 go_backwards=True, dropout=0.1, recurrent_dropout=0.1, seed=2,
                                 zoneout=(0.2, 0.1), perturbations=[DropConnect(0.3)]), 0),
        (lambda: L.LayerNormGRU(4, return_sequences=True, zoneout=0.2, seed=3,
                                perturbations=[WeightNoise(0.1, per="sequence")],
                                state_regularizer=[NormStabilizer(1.0),
                                                   TemporalActivationRegularization(1.0)]), 2),
        (lambda: L.LayerNormGRU(4, return_state=True, use_bias=False, recurrent_dropout=0.2), 0),
        (lambda: L.Bidirectional(L.LayerNormLSTM(4, return_sequences=True)), 0),
        (lambda: keras.layers.RNN(L.LayerNormLSTMCell(4, bias_regularizer="l2"),
                                  return_sequences=True), 1),
        (lambda: keras.layers.RNN(L.LayerNormGRUCell(4), return_state=True), 0),
    ],
    ids=["lstm", "lstm-state", "gru", "gru-state", "bidirectional", "lstm-cell", "gru-cell"],
)
def test_layer_harness(make, num_losses, tmp_path):
    run_layer_test(make, tmp_path, expected_num_losses=num_losses)


ISSUE = {  # the configurations of issue 23, item 3
    "lstm": dict(zoneout=(0.5, 0.05), perturbations=[WeightNoise(0.075, per="sequence")],
                 state_regularizer=[NormStabilizer(50.0), TemporalActivationRegularization(1.0)]),
    "gru": dict(zoneout=0.3, perturbations=[DropConnect(0.3, per="timestep")],
                state_regularizer=NormStabilizer(50.0)),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_zoneout_perturbation_and_penalties_fit_save_reload(kind, bidirectional, tmp_path):
    layer = LAYERS[kind](8, return_sequences=True, seed=4, **ISSUE[kind])
    rnn = L.Bidirectional(layer) if bidirectional else layer
    inputs = keras.Input(X.shape[1:])
    model = keras.Model(inputs, keras.layers.Dense(1)(rnn(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [to_numpy(w) for w in model.weights]
    history = model.fit(X, np.ones(X.shape[:2] + (1,), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    model(X, training=True)  # the penalties, one add_loss each (JAX's fit keeps no losses)
    assert len(model.losses) == (2 if bidirectional else 1) * len(
        state_regularizer_list(ISSUE[kind]["state_regularizer"]))
    after = {w.path: to_numpy(w) for w in model.weights}
    for w, old in zip(model.weights, before):  # every weight trained, the gains included
        assert not np.allclose(after[w.path], old), w.path
    path = str(tmp_path / f"{kind}.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    inner = reloaded.layers[1].forward_layer if bidirectional else reloaded.layers[1]
    assert type(inner) is LAYERS[kind]
    original = rnn.forward_layer if bidirectional else layer
    assert {**inner.get_config(), "name": 0} == {**original.get_config(), "name": 0}
    np.testing.assert_allclose(to_numpy(reloaded(X)), to_numpy(model(X)), atol=1e-6)
    reloaded.fit(X, np.ones(X.shape[:2] + (1,), "float32"), epochs=1, verbose=0)
