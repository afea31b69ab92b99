"""The cuDNN path of the LSTM (layers/_cudnn.py, _backend.cudnn_lstm).

On a CPU the plumbing is proven with Keras' kernel replaced by a reference implementation of the
same contract (``fake_cudnn``): which configurations take it and why, that per-sequence
perturbations are drawn once and the perturbed kernels handed to the kernel, that the
norm-stabilizer is computed from the returned sequence, that masks route correctly, and that the
result equals our loop. Tests marked ``gpu`` run the real kernels and are skipped without a GPU.
"""

import importlib
import inspect

import keras
import numpy as np
import pytest
from keras import ops

from keras_rnnreg import _backend
from keras_rnnreg import layers as L
from keras_rnnreg.layers import LSTM, SimpleRNN, cudnn_path
from keras_rnnreg.layers._cudnn import config_reason
from keras_rnnreg.perturbations import DropConnect, WeightNoise
from keras_rnnreg.regularizers import NormStabilizer
from tests.conftest import to_numpy, tolerance
from tests.gradients import value_and_grads

B, T, F, N = 3, 6, 5, 4
BACKEND = keras.backend.backend()


def _inputs(seed=0):
    return np.random.default_rng(seed).normal(size=(B, T, F)).astype("float32")


def _mask(kind):
    mask = np.ones((B, T), dtype=bool)
    if kind == "right":
        mask[0, 4:] = False
        mask[1, 2:] = False
    elif kind == "left":
        mask[0, :2] = False
        mask[2, :5] = False
    return ops.convert_to_tensor(mask)


class ReferenceKernel:
    """Keras' ``rnn.lstm`` contract in keras.ops, recording what it was handed."""

    def __init__(self):
        self.calls = []

    def __call__(self, inputs, initial_state_h, initial_state_c, mask, kernel, recurrent_kernel,
                 bias, activation, recurrent_activation, return_sequences=False,
                 go_backwards=False, unroll=False):
        assert activation is keras.activations.tanh
        assert recurrent_activation is keras.activations.sigmoid
        assert return_sequences and not go_backwards and not unroll
        self.calls.append(
            {"kernel": kernel, "recurrent_kernel": recurrent_kernel, "bias": bias, "mask": mask}
        )
        h, c = initial_state_h, initial_state_c
        outputs = []
        for t in range(inputs.shape[1]):
            z = ops.matmul(inputs[:, t], kernel) + ops.matmul(h, recurrent_kernel) + bias
            zi, zf, zc, zo = ops.split(z, 4, axis=-1)
            c_new = ops.sigmoid(zf) * c + ops.sigmoid(zi) * ops.tanh(zc)
            h_new = ops.sigmoid(zo) * ops.tanh(c_new)
            if mask is not None:  # TensorFlow's kernel: zeros at padded steps, state carried
                m = ops.cast(mask[:, t : t + 1], h.dtype)
                h_new = h + m * (h_new - h)
                c_new = c + m * (c_new - c)
                outputs.append(h_new * m)
            else:
                outputs.append(h_new)
            h, c = h_new, c_new
        return h, ops.stack(outputs, axis=1), [h, c]


class ReferenceBidirectionalKernel:
    """Keras' ``rnn.bidirectional_lstm`` contract (no mask), from two reference passes."""

    def __init__(self):
        self.calls = []
        self.one_way = ReferenceKernel()

    def __call__(self, inputs, fwd_initial_state_h, fwd_initial_state_c, bwd_initial_state_h,
                 bwd_initial_state_c, mask, fwd_kernel, fwd_recurrent_kernel, fwd_bias,
                 bwd_kernel, bwd_recurrent_kernel, bwd_bias, activation, recurrent_activation,
                 return_sequences=False, unroll=False):
        assert mask is None
        self.calls.append({"fwd_recurrent_kernel": fwd_recurrent_kernel,
                           "bwd_recurrent_kernel": bwd_recurrent_kernel})
        kw = {"activation": activation, "recurrent_activation": recurrent_activation,
              "return_sequences": True}
        fwd = self.one_way(inputs, fwd_initial_state_h, fwd_initial_state_c, None, fwd_kernel,
                           fwd_recurrent_kernel, fwd_bias, **kw)
        last, seq, states = self.one_way(ops.flip(inputs, axis=1), bwd_initial_state_h,
                                          bwd_initial_state_c, None, bwd_kernel,
                                          bwd_recurrent_kernel, bwd_bias, **kw)
        return fwd, (last, ops.flip(seq, axis=1), states)


@pytest.fixture
def fake_cudnn(monkeypatch):
    kernel = ReferenceKernel()
    kernel.bidirectional = ReferenceBidirectionalKernel()
    kernels = {"lstm": kernel, "bidirectional_lstm": kernel.bidirectional}
    monkeypatch.setattr(_backend, "keras_lstm_kernel", lambda name="lstm": kernels[name])
    monkeypatch.setattr(_backend, "gpu_available", lambda: True)
    return kernel


def _pair(**kwargs):
    """The same layer twice, weights and seed shared: use_cudnn=True and use_cudnn=False."""
    x = _inputs()
    cudnn = LSTM(N, use_cudnn=True, seed=7, **kwargs)
    loop = LSTM(N, use_cudnn=False, seed=7, **kwargs)
    cudnn.build(x.shape)
    loop.build(x.shape)
    rng = np.random.default_rng(3)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in loop.get_weights()]
    cudnn.set_weights(weights)
    loop.set_weights(weights)
    return cudnn, loop, x


# ------------------------------------------------------------------------ Keras' private kernels
@pytest.mark.parametrize("backend", _backend.CUDNN_BACKENDS)
@pytest.mark.parametrize("name", ["lstm", "bidirectional_lstm"])
def test_keras_lstm_kernels_are_where_the_adapter_looks(backend, name):
    """Fails loudly when a Keras release moves or reshapes the private kernels we call."""
    try:
        module = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}[backend]
        importlib.import_module(module)
    except ImportError:
        pytest.skip(f"{backend} is not installed")
    module_name = f"keras.src.backend.{backend}.rnn"
    module = importlib.import_module(module_name)
    assert hasattr(module, name), (
        f"{module_name}.{name} is gone in Keras {keras.__version__}: the cuDNN path of "
        "keras_rnnreg.layers.LSTM / Bidirectional falls back to our loop; update "
        "keras_rnnreg/_backend.py."
    )
    params = list(inspect.signature(getattr(module, name)).parameters)
    if name == "bidirectional_lstm" and backend == "tensorflow":
        # A stub raising NotImplementedError in Keras 3.15: the wrapper runs two cuDNN calls.
        assert params == ["args", "kwargs"], params
        return
    expected = (
        _backend.KERAS_LSTM_KERNEL_ARGS if name == "lstm" else _backend.KERAS_BILSTM_KERNEL_ARGS
    )
    assert tuple(params[: len(expected)]) == expected, (
        f"{module_name}.{name} changed its signature in Keras {keras.__version__}: {params}"
    )
    if backend == keras.backend.backend():
        assert _backend.keras_lstm_kernel(name) is getattr(module, name)


# ----------------------------------------------------------------------------------- eligibility
@pytest.mark.parametrize(
    "kwargs,reason",
    [
        ({"activation": "relu"}, "activation='relu'"),
        ({"recurrent_activation": "hard_sigmoid"}, "recurrent_activation='hard_sigmoid'"),
        ({"output_activation": None}, "output_activation=None"),
        ({"unroll": True}, "unroll=True"),
        ({"recurrent_dropout": 0.2}, "recurrent_dropout=0.2"),
        ({"perturbations": [WeightNoise(0.1)]}, "per-timestep perturbation WeightNoise"),
        ({"perturbations": [DropConnect(0.5)]}, "per-timestep perturbation DropConnect"),
        ({"perturbations": [WeightNoise(0.1, sampling="local")]}, "per-timestep perturbation"),
        ({"state_regularizer": NormStabilizer(1.0, on="cell")}, "state_regularizer on='cell'"),
        ({"return_cell_sequence": True}, "return_cell_sequence=True"),
        ({"use_cudnn": False}, "use_cudnn=False"),
    ],
)
def test_ineligible_configurations_name_the_reason(kwargs, reason):
    layer = LSTM(N, **kwargs)
    taken, why = cudnn_path(layer)
    assert not taken and reason in why
    assert reason in config_reason(layer)
    if kwargs.get("use_cudnn") is not False:
        with pytest.raises(ValueError, match="use_cudnn=True") as info:
            LSTM(N, use_cudnn=True, **kwargs)
        assert reason in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"perturbations": [DropConnect(0.5, per="sequence")]},
        {"perturbations": [WeightNoise(0.05, per="sequence", target="both")]},
        {"perturbations": [WeightNoise(0.05, mode="multiplicative", per="sequence")]},
        {"state_regularizer": NormStabilizer(50.0)},
        {"dropout": 0.3, "use_bias": False, "return_state": True, "go_backwards": True},
        {"output_activation": "tanh"},
    ],
)
def test_eligible_configurations(kwargs, fake_cudnn):
    layer = LSTM(N, use_cudnn=True, **kwargs)
    assert config_reason(layer) is None
    taken, how = cudnn_path(layer)
    assert taken and "cuDNN" in how
    auto_taken, auto_why = cudnn_path(LSTM(N, **kwargs))
    assert auto_taken == (BACKEND != "jax")
    if BACKEND == "jax":
        assert "use_cudnn=True takes jax.experimental.rnn" in auto_why


def test_per_timestep_perturbations_only_matter_in_training():
    layer = LSTM(N, perturbations=[WeightNoise(0.1)])
    assert config_reason(layer, training=True) is not None
    assert config_reason(layer, training=False) is None


def test_simple_rnn_has_no_cudnn_path():
    assert "SimpleRNN has no cuDNN path" in cudnn_path(SimpleRNN(N))[1]
    with pytest.raises(ValueError, match="SimpleRNN has no cuDNN path"):
        SimpleRNN(N, use_cudnn=True)


def test_without_gpu(monkeypatch):
    monkeypatch.setattr(_backend, "gpu_available", lambda: False)
    taken, why = cudnn_path(LSTM(N, use_cudnn=True))
    assert not taken
    if BACKEND in _backend.CUDNN_BACKENDS:
        assert "no GPU" in why
    # As keras.layers.LSTM: use_cudnn=True raises when the kernel cannot run, "auto" falls back.
    with pytest.raises(ValueError, match="no GPU"):
        LSTM(N, use_cudnn=True)(_inputs())
    assert LSTM(N)(_inputs()).shape == (B, N)


@pytest.mark.parametrize("mask_kind", [None, "right"])
def test_kernel_refusing_falls_back_to_our_loop(mask_kind, monkeypatch):
    """Keras' kernels raise NotImplementedError where they cannot run (e.g. cuDNN not loadable
    on a machine with a GPU): "auto" runs our loop, True raises a ValueError."""

    def refusing(*args, **kwargs):
        raise NotImplementedError("cuDNN not loadable")

    monkeypatch.setattr(_backend, "keras_lstm_kernel", lambda name="lstm": refusing)
    monkeypatch.setattr(_backend, "gpu_available", lambda: True)
    mask = None if mask_kind is None else _mask(mask_kind)
    x = _inputs()
    auto = LSTM(N, return_sequences=True, use_cudnn="auto" if BACKEND != "jax" else True)
    loop = LSTM(N, return_sequences=True, use_cudnn=False)
    loop.build(x.shape)
    auto.build(x.shape)
    auto.set_weights(loop.get_weights())
    if BACKEND == "jax":  # use_cudnn=True: no silent fallback
        with pytest.raises(ValueError, match="cannot run here"):
            auto(x, mask=mask)
        return
    np.testing.assert_allclose(
        to_numpy(auto(x, mask=mask)), to_numpy(loop(x, mask=mask)), atol=1e-6
    )
    strict = LSTM(N, use_cudnn=True)
    with pytest.raises(ValueError, match="cannot run here"):
        strict(x)


def test_moved_kernel_falls_back_with_a_reason(monkeypatch):
    monkeypatch.setattr(_backend, "keras_lstm_kernel", lambda name="lstm": None)
    monkeypatch.setattr(_backend, "gpu_available", lambda: True)
    taken, why = cudnn_path(LSTM(N, use_cudnn=True))
    assert not taken and "rnn.lstm is not in Keras" in why


@pytest.mark.parametrize("value", ["yes", 1, None, "True"])
def test_invalid_use_cudnn(value):
    with pytest.raises(ValueError, match="use_cudnn"):
        LSTM(N, use_cudnn=value)


@pytest.mark.parametrize("value", ["auto", True, False])
def test_use_cudnn_is_serialized(value, fake_cudnn):
    layer = LSTM(N, use_cudnn=value)
    config = layer.get_config()
    assert config["use_cudnn"] is value or config["use_cudnn"] == value
    assert LSTM.from_config(config).use_cudnn == value
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.use_cudnn == value
    config.pop("use_cudnn")  # configs saved before the argument existed
    assert LSTM.from_config(config).use_cudnn == "auto"
    # SimpleRNN has no use_cudnn, as Keras' (Bidirectional then copies none); configs saved
    # when it had one still load.
    assert "use_cudnn" not in SimpleRNN(N).get_config()
    for old in ("auto", False):
        assert not hasattr(SimpleRNN.from_config({**SimpleRNN(N).get_config(), "use_cudnn": old}),
                           "use_cudnn")


# ------------------------------------------------------------------ the plumbing, reference kernel
REGULARIZED = {
    "plain": {},
    "dropconnect/sequence": {"perturbations": [DropConnect(0.5, per="sequence")]},
    "noise/sequence, both kernels": {
        "perturbations": [WeightNoise(0.1, per="sequence", target="both")]
    },
    "mult. noise/sequence": {
        "perturbations": [WeightNoise(0.1, mode="multiplicative", per="sequence")]
    },
    "norm-stabilizer": {"state_regularizer": NormStabilizer(3.0)},
    "dropout + dropconnect + norm-stabilizer": {
        "dropout": 0.3,
        "perturbations": [DropConnect(0.3, per="sequence")],
        "state_regularizer": NormStabilizer(3.0),
    },
}


@pytest.mark.parametrize("name", sorted(REGULARIZED))
@pytest.mark.parametrize("return_sequences", [False, True])
def test_cudnn_path_equals_our_loop(name, return_sequences, fake_cudnn):
    cudnn, loop, x = _pair(return_sequences=return_sequences, **REGULARIZED[name])
    out_c, grads_c = value_and_grads(cudnn, x, training=True)
    assert fake_cudnn.calls, "the kernel was not called"
    out_l, grads_l = value_and_grads(loop, x, training=True)
    np.testing.assert_allclose(out_c, out_l, atol=1e-5)
    for g_c, g_l in zip(grads_c, grads_l):
        np.testing.assert_allclose(g_c, g_l, atol=1e-5)
    if "state_regularizer" in REGULARIZED[name]:
        cudnn(x, training=True)  # losses are recorded by a stateful call (not on JAX's above)
        loop(x, training=True)
        assert len(cudnn.losses) == len(loop.losses) == 1
        np.testing.assert_allclose(
            to_numpy(cudnn.losses[0]), to_numpy(loop.losses[0]), rtol=1e-5, atol=1e-7
        )


def test_perturbed_kernels_are_drawn_once_and_handed_to_the_kernel(fake_cudnn):
    layer, _, x = _pair(perturbations=[DropConnect(0.5, per="sequence")])
    layer(x, training=True)
    assert len(fake_cudnn.calls) == 1
    handed = fake_cudnn.calls[0]
    np.testing.assert_array_equal(to_numpy(handed["kernel"]), to_numpy(layer.kernel))
    stored = to_numpy(layer.recurrent_kernel)
    perturbed = to_numpy(handed["recurrent_kernel"])
    assert perturbed.shape == stored.shape  # one draw, no time axis
    dropped = perturbed == 0
    assert 0.2 < dropped.mean() < 0.8
    np.testing.assert_allclose(perturbed[~dropped], 2.0 * stored[~dropped], rtol=1e-6)
    # Inference hands over the clean weights.
    layer(x, training=False)
    np.testing.assert_array_equal(to_numpy(fake_cudnn.calls[-1]["recurrent_kernel"]), stored)


def test_norm_stabilizer_is_computed_from_the_returned_sequence(fake_cudnn):
    layer, _, x = _pair(return_sequences=True, state_regularizer=NormStabilizer(3.0))
    sequence = layer(x)
    assert len(fake_cudnn.calls) == 1
    expected = NormStabilizer(3.0).penalty(sequence)
    np.testing.assert_allclose(to_numpy(layer.losses[0]), to_numpy(expected), rtol=1e-6)


@pytest.mark.parametrize("mask_kind", ["right", "left"])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_masks(mask_kind, return_state, zero_output_for_mask, fake_cudnn):
    """Keras' masked outputs either way: zeros, or the last valid output repeated (filled in
    after cuDNN, which outputs zeros at padded steps)."""
    cudnn, loop, x = _pair(
        return_sequences=True, return_state=return_state, state_regularizer=NormStabilizer(3.0),
        zero_output_for_mask=zero_output_for_mask,
    )
    mask = _mask(mask_kind)
    out_c, grads_c = value_and_grads(cudnn, x, mask=mask, training=True)
    out_l, grads_l = value_and_grads(loop, x, mask=mask, training=True)
    np.testing.assert_allclose(out_c, out_l, atol=1e-5)
    for g_c, g_l in zip(grads_c, grads_l):
        np.testing.assert_allclose(g_c, g_l, atol=1e-5)
    cudnn(x, mask=mask, training=True)
    loop(x, mask=mask, training=True)
    np.testing.assert_allclose(
        to_numpy(cudnn.losses[0]), to_numpy(loop.losses[0]), rtol=1e-5, atol=1e-7
    )
    takes_mask = _backend.kernel_takes_mask()
    if mask_kind == "right" and (takes_mask or not return_state):
        assert fake_cudnn.calls, "a right-padded mask should take the cuDNN path"
        assert (fake_cudnn.calls[0]["mask"] is not None) == takes_mask
    if BACKEND == "torch" and (mask_kind == "left" or (return_state and not takes_mask)):
        assert not fake_cudnn.calls  # eager: only the taken branch runs


def test_bidirectional_in_a_model_trains(fake_cudnn):
    x = _inputs()
    inputs = keras.Input((T, F))
    hidden = keras.layers.Bidirectional(
        LSTM(N, return_sequences=True, use_cudnn=True,
             perturbations=[DropConnect(0.3, per="sequence")],
             state_regularizer=NormStabilizer(5.0))
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(x, np.zeros((B, T, 1), "float32"), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert fake_cudnn.calls


@pytest.mark.parametrize("padding", ["right", "left"])
def test_masked_model_fits_in_graph_mode(padding, fake_cudnn):
    """The per-batch choice on the mask (ops.cond) inside a compiled train step."""
    x = _inputs()
    if padding == "right":
        x[0, 4:] = 0.0
    else:
        x[0, :2] = 0.0
    model = keras.Sequential([
        keras.Input((T, F)),
        keras.layers.Masking(0.0),
        LSTM(N, return_sequences=True, use_cudnn=True, state_regularizer=NormStabilizer(5.0),
             perturbations=[DropConnect(0.3, per="sequence")]),
        keras.layers.Dense(1),
    ])
    reference = keras.Sequential([
        keras.Input((T, F)),
        keras.layers.Masking(0.0),
        LSTM(N, return_sequences=True, use_cudnn=False, state_regularizer=NormStabilizer(5.0)),
        keras.layers.Dense(1),
    ])
    reference.set_weights(model.get_weights())
    model.compile(optimizer="sgd", loss="mse")
    reference.compile(optimizer="sgd", loss="mse")
    y = np.zeros((B, T, 1), "float32")
    history = model.fit(x, y, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    reference.set_weights(model.get_weights())
    np.testing.assert_allclose(
        model.evaluate(x, y, verbose=0), reference.evaluate(x, y, verbose=0), rtol=1e-5
    )


@pytest.mark.skipif(BACKEND != "torch", reason="Keras' PyTorch kernel has a CPU fallback")
def test_keras_torch_kernel_through_the_adapter_equals_our_loop(monkeypatch):
    """Keras' real PyTorch kernel (its CPU fallback here, cuDNN on a GPU): argument order, weight
    layout and return format as the adapter expects."""
    monkeypatch.setattr(_backend, "gpu_available", lambda: True)
    cudnn, loop, x = _pair(return_sequences=True, return_state=True,
                           perturbations=[DropConnect(0.4, per="sequence")])
    out_c, grads_c = value_and_grads(cudnn, x, training=True)
    out_l, grads_l = value_and_grads(loop, x, training=True)
    np.testing.assert_allclose(out_c, out_l, atol=1e-5)
    for g_c, g_l in zip(grads_c, grads_l):
        np.testing.assert_allclose(g_c, g_l, atol=1e-5)
    mask = _mask("right")
    np.testing.assert_allclose(
        to_numpy(cudnn(x, mask=mask)[0]), to_numpy(loop(x, mask=mask)[0]), atol=1e-5
    )


# ------------------------------------------------------------------------------ GPU: real kernels
@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(REGULARIZED))
@pytest.mark.parametrize("mask_kind", [None, "right", "left"])
def test_gpu_cudnn_equals_our_loop(name, mask_kind):
    cudnn, loop, x = _pair(return_sequences=True, **REGULARIZED[name])
    assert cudnn_path(cudnn)[0], cudnn_path(cudnn)[1]
    mask = None if mask_kind is None else _mask(mask_kind)
    out_c, grads_c = value_and_grads(cudnn, x, mask=mask, training=True)
    out_l, grads_l = value_and_grads(loop, x, mask=mask, training=True)
    np.testing.assert_allclose(out_c, out_l, **tolerance(cudnn=True))
    for g_c, g_l in zip(grads_c, grads_l):
        np.testing.assert_allclose(g_c, g_l, **tolerance(cudnn=True))


@pytest.mark.gpu
def test_gpu_auto_takes_cudnn_on_tensorflow_and_torch():
    taken, why = cudnn_path(LSTM(N, perturbations=[DropConnect(0.5, per="sequence")],
                                 state_regularizer=NormStabilizer(50.0)))
    assert taken == (BACKEND in ("tensorflow", "torch")), why


@pytest.mark.skipif(BACKEND != "tensorflow", reason="XLA opt-out is TensorFlow's")
def test_tensorflow_layers_that_may_run_cudnn_opt_out_of_xla(fake_cudnn):
    assert not LSTM(N).supports_jit
    # cuDNN in inference only (per-timestep noise in training): still no XLA.
    assert not LSTM(N, perturbations=[WeightNoise(0.1)]).supports_jit
    assert LSTM(N, use_cudnn=False).supports_jit
    assert LSTM(N, output_activation=None).supports_jit


# ------------------------------------------------------------------- Bidirectional: one cuDNN call
def _bidirectional_pair(merge_mode="concat", return_sequences=True, **kwargs):
    x = _inputs()
    fused = L.Bidirectional(
        LSTM(N, use_cudnn=True, seed=7, return_sequences=return_sequences, **kwargs),
        merge_mode=merge_mode,
    )
    two_calls = keras.layers.Bidirectional(
        LSTM(N, use_cudnn=False, seed=7, return_sequences=return_sequences, **kwargs),
        merge_mode=merge_mode,
    )
    fused(x)
    two_calls(x)
    rng = np.random.default_rng(5)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32")
               for w in two_calls.get_weights()]
    fused.set_weights(weights)
    two_calls.set_weights(weights)
    return fused, two_calls, x


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_one_call_equals_two_layers(merge_mode, return_sequences, fake_cudnn):
    kwargs = {"perturbations": [DropConnect(0.4, per="sequence")],
              "state_regularizer": NormStabilizer(3.0, cost="relative")}
    fused, two_calls, x = _bidirectional_pair(merge_mode, return_sequences, **kwargs)
    fake_cudnn.bidirectional.calls.clear()
    out_f, grads_f = value_and_grads(fused, x, training=True)
    assert fake_cudnn.bidirectional.calls, "the bidirectional kernel was not called"
    out_t, grads_t = value_and_grads(two_calls, x, training=True)
    np.testing.assert_allclose(out_f, out_t, atol=1e-5)
    for g_f, g_t in zip(grads_f, grads_t):
        np.testing.assert_allclose(g_f, g_t, atol=1e-5)
    fused(x, training=True)
    two_calls(x, training=True)
    np.testing.assert_allclose(
        sorted(float(to_numpy(v)) for v in fused.losses),
        sorted(float(to_numpy(v)) for v in two_calls.losses), rtol=1e-5,
    )


def test_bidirectional_falls_back_to_two_layers(fake_cudnn):
    fused, two_calls, x = _bidirectional_pair(dropout=0.3)
    fake_cudnn.bidirectional.calls.clear()
    fused(x, training=True)  # a different input dropout mask per direction
    fused(x, mask=_mask("right"))
    assert not fake_cudnn.bidirectional.calls
    fused(x)  # inference: no dropout
    assert fake_cudnn.bidirectional.calls
    np.testing.assert_allclose(
        to_numpy(fused(x, mask=_mask("left"))), to_numpy(two_calls(x, mask=_mask("left"))),
        atol=1e-5,
    )


def test_bidirectional_serializes():
    layer = L.Bidirectional(LSTM(N, return_sequences=True), merge_mode="sum")
    x = _inputs()
    expected = to_numpy(layer(x))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, L.Bidirectional)
    restored(x)
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(restored(x)), expected, atol=1e-6)
