"""keras_rnnreg.layers.GRU beyond Keras' function (test_compat.py checks that): perturbations,
the norm-stabilizer, serialization, and the cuDNN path through Keras' GRU kernels (a reference
kernel of the same contract on CPU, the real kernels on a GPU; tests marked ``gpu``)."""

import importlib
import inspect

import keras
import numpy as np
import pytest
from keras import ops

from keras_rnnreg import _backend
from keras_rnnreg.layers import GRU, cudnn_path
from keras_rnnreg.layers._cudnn import config_reason
from keras_rnnreg.perturbations import DropConnect, WeightNoise
from keras_rnnreg.regularizers import NormStabilizer, state_penalty
from tests.conftest import to_numpy, tolerance
from tests.gradients import value_and_grads
from tests.layers.harness import run_layer_test

B, T, F, N = 3, 6, 5, 4
BACKEND = keras.backend.backend()
GRU_KERNEL_ARGS = (
    "inputs", "initial_state", "mask", "kernel", "recurrent_kernel", "bias", "activation",
    "recurrent_activation", "return_sequences", "go_backwards", "unroll",
)


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


def _pair(**kwargs):
    """The same GRU twice with shared weights and seed: use_cudnn=True and use_cudnn=False."""
    x = _inputs()
    cudnn = GRU(N, use_cudnn=True, seed=7, **kwargs)
    loop = GRU(N, use_cudnn=False, seed=7, **kwargs)
    cudnn.build(x.shape)
    loop.build(x.shape)
    rng = np.random.default_rng(3)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in loop.get_weights()]
    cudnn.set_weights(weights)
    loop.set_weights(weights)
    return cudnn, loop, x


class ReferenceGRUKernel:
    """Keras' ``rnn.gru`` contract (reset_after=True) in keras.ops, recording what it was handed."""

    def __init__(self):
        self.calls = []

    def __call__(self, inputs, initial_state, mask, kernel, recurrent_kernel, bias, activation,
                 recurrent_activation, return_sequences=False, go_backwards=False, unroll=False,
                 reset_after=True):
        assert activation is keras.activations.tanh
        assert recurrent_activation is keras.activations.sigmoid
        assert return_sequences and not go_backwards and not unroll and reset_after
        assert tuple(bias.shape) == (2, kernel.shape[-1])
        self.calls.append({"kernel": kernel, "recurrent_kernel": recurrent_kernel, "mask": mask})
        h = initial_state
        outputs = []
        for t in range(inputs.shape[1]):
            xz, xr, xh = ops.split(ops.matmul(inputs[:, t], kernel) + bias[0], 3, axis=-1)
            az, ar, ah = ops.split(ops.matmul(h, recurrent_kernel) + bias[1], 3, axis=-1)
            z = ops.sigmoid(xz + az)
            r = ops.sigmoid(xr + ar)
            h_new = z * h + (1.0 - z) * ops.tanh(xh + r * ah)
            if mask is not None:  # TensorFlow's kernel: zeros at padded steps, state carried
                m = ops.cast(mask[:, t : t + 1], h.dtype)
                h_new = h + m * (h_new - h)
                outputs.append(h_new * m)
            else:
                outputs.append(h_new)
            h = h_new
        return h, ops.stack(outputs, axis=1), [h]


@pytest.fixture
def fake_cudnn(monkeypatch):
    kernel = ReferenceGRUKernel()
    monkeypatch.setattr(_backend, "keras_lstm_kernel", lambda name="lstm": kernel)
    monkeypatch.setattr(_backend, "CUDNN_GRU_BACKENDS", _backend.CUDNN_BACKENDS)
    monkeypatch.setattr(_backend, "gpu_available", lambda: True)
    return kernel


# -------------------------------------------------------------------------------- perturbations
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize(
    "perturbation",
    [
        DropConnect(0.5),
        DropConnect(0.5, per="sequence", target="both"),
        WeightNoise(0.3, mode="multiplicative"),
        WeightNoise(0.3, sampling="local"),
        DropConnect(0.3, sampling="local", target="both"),
    ],
    ids=repr,
)
def test_perturbations_act_in_training_only(reset_after, perturbation):
    layer = GRU(N, return_sequences=True, reset_after=reset_after, perturbations=[perturbation])
    clean = GRU(N, return_sequences=True, reset_after=reset_after)
    x = _inputs()
    layer.build(x.shape)
    clean.build(x.shape)
    clean.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(clean(x)), atol=1e-6)
    noisy = to_numpy(layer(x, training=True))
    assert np.all(np.isfinite(noisy))
    assert np.abs(noisy - to_numpy(clean(x))).max() > 1e-3
    _, grads = value_and_grads(layer, x, training=True)
    assert all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("reset_after", [True, False])
def test_per_sequence_noise_equals_the_layer_with_the_perturbed_weights(reset_after, monkeypatch):
    """Per-sequence weight noise is one draw of U for the whole sequence: the noisy layer equals a
    clean layer given that draw (the draw recorded by wrapping ``perturb``)."""
    perturbation = WeightNoise(0.3, per="sequence")
    drawn = []
    original = WeightNoise.perturb

    def recording(self, weight, time_steps, seed_generator):
        out = original(self, weight, time_steps, seed_generator)
        drawn.append(out)
        return out

    monkeypatch.setattr(WeightNoise, "perturb", recording)
    layer = GRU(N, return_sequences=True, reset_after=reset_after, perturbations=[perturbation])
    clean = GRU(N, return_sequences=True, reset_after=reset_after)
    x = _inputs()
    noisy = to_numpy(layer(x, training=True))
    kernel, _, bias = layer.get_weights()
    clean.build(x.shape)
    clean.set_weights([kernel, to_numpy(drawn[-1]), bias])
    np.testing.assert_allclose(noisy, to_numpy(clean(x)), atol=1e-5)


def test_local_noise_has_the_weight_noise_moments_reset_after_false():
    """reset_after=False draws the candidate's local noise from (r ⊙ h) U_h: one step from a
    known state, its variance over many draws matches the weight-level draw's."""
    x = np.random.default_rng(1).normal(size=(1, 1, F)).astype("float32")
    h0 = np.random.default_rng(2).normal(size=(1, N)).astype("float32")
    x = np.repeat(x, 4000, axis=0)
    h0 = np.repeat(h0, 4000, axis=0)
    local = GRU(N, reset_after=False, perturbations=[WeightNoise(0.5, per="timestep",
                                                                 sampling="local")])
    weight = GRU(N, reset_after=False, perturbations=[WeightNoise(0.5, per="timestep")])
    local.build(x.shape)
    weight.build(x.shape)
    weight.set_weights(local.get_weights())
    out_local = to_numpy(local(x, initial_state=[h0], training=True))
    # The weight-level draw is shared by the batch: one call per sample.
    out_weight = np.concatenate(
        [to_numpy(weight(x[:1], initial_state=[h0[:1]], training=True)) for _ in range(150)]
    )
    np.testing.assert_allclose(out_local.mean(0), out_weight.mean(0), atol=0.08)
    np.testing.assert_allclose(out_local.std(0), out_weight.std(0), rtol=0.25, atol=0.02)
    # Not vacuous: without the candidate's noise the spread is clearly smaller.
    assert out_weight.std(0).max() > 0.05


def test_norm_stabilizer_penalizes_the_hidden_sequence():
    layer = GRU(N, return_sequences=True, state_regularizer=NormStabilizer(10.0))
    x = _inputs()
    mask = _mask("left")
    seq = layer(x, mask=mask)
    expected = 10.0 * to_numpy(state_penalty(seq, mask=ops.cast(mask, "float32")))
    assert len(layer.losses) == 1
    np.testing.assert_allclose(to_numpy(layer.losses[0]), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="on='cell'"):
        GRU(N, state_regularizer=NormStabilizer(1.0, on="cell"))


@pytest.mark.parametrize(
    "make, num_losses",
    [
        (lambda: GRU(N, reset_after=False, recurrent_activation="hard_sigmoid", dropout=0.1,
                     perturbations=[DropConnect(0.2, per="sequence")],
                     state_regularizer=NormStabilizer(5.0), return_sequences=True), 1),
        (lambda: GRU(N, return_state=True, go_backwards=True, bias_regularizer="l2",
                     bias_initializer="random_normal"), 1),
    ],
    ids=["reset_before-perturbed", "reset_after-state"],
)
def test_layer_harness(make, num_losses, tmp_path):
    run_layer_test(make, tmp_path, expected_num_losses=num_losses)


def test_invalid_reset_after():
    with pytest.raises(ValueError, match="reset_after"):
        GRU(N, reset_after="yes")


# -------------------------------------------------------------------------------------- cuDNN
def test_keras_gru_kernels_are_where_the_adapter_looks():
    for backend in _backend.CUDNN_GRU_BACKENDS:
        try:
            importlib.import_module(backend)
        except ImportError:
            continue
        module = importlib.import_module(f"keras.src.backend.{backend}.rnn")
        params = list(inspect.signature(module.gru).parameters)
        assert tuple(params[: len(GRU_KERNEL_ARGS)]) == GRU_KERNEL_ARGS, params
        assert "reset_after" in params


@pytest.mark.parametrize(
    "kwargs,reason",
    [
        ({"activation": "relu"}, "activation='relu'"),
        ({"recurrent_activation": "hard_sigmoid"}, "recurrent_activation='hard_sigmoid'"),
        ({"reset_after": False}, "reset_after=False"),
        ({"unroll": True}, "unroll=True"),
        ({"recurrent_dropout": 0.2}, "recurrent_dropout=0.2"),
        ({"perturbations": [DropConnect(0.5)]}, "per-timestep perturbation DropConnect"),
        ({"use_cudnn": False}, "use_cudnn=False"),
    ],
)
def test_ineligible_configurations_name_the_reason(kwargs, reason):
    layer = GRU(N, **kwargs)
    taken, why = cudnn_path(layer)
    assert not taken and reason in why
    assert reason in config_reason(layer)
    if kwargs.get("use_cudnn") is not False:
        with pytest.raises(ValueError, match="use_cudnn=True") as info:
            GRU(N, use_cudnn=True, **kwargs)
        assert reason in str(info.value)


def test_runtime_reasons(monkeypatch):
    monkeypatch.setattr(_backend, "gpu_available", lambda: True)
    taken, why = cudnn_path(GRU(N))
    if BACKEND == "jax":
        assert not taken and "no cuDNN GRU kernel" in why
    else:
        assert taken and why.startswith(f"cuDNN: Keras' {BACKEND} GRU kernel")
    monkeypatch.setattr(_backend, "gpu_available", lambda: False)
    taken, why = cudnn_path(GRU(N))
    assert not taken


@pytest.mark.parametrize("return_sequences", [False, True])
def test_cudnn_path_equals_our_loop(return_sequences, fake_cudnn):
    cudnn, loop, x = _pair(return_sequences=return_sequences, return_state=True,
                           perturbations=[DropConnect(0.4, per="sequence", target="both")],
                           state_regularizer=NormStabilizer(3.0))
    out_c, grads_c = value_and_grads(cudnn, x, training=True)
    out_l, grads_l = value_and_grads(loop, x, training=True)
    assert len(fake_cudnn.calls) == 1
    np.testing.assert_allclose(out_c, out_l, atol=1e-5)
    for g_c, g_l in zip(grads_c, grads_l):
        np.testing.assert_allclose(g_c, g_l, atol=1e-5)
    cudnn(x)
    loop(x)
    assert len(fake_cudnn.calls) == 2
    np.testing.assert_allclose(to_numpy(cudnn.losses[0]), to_numpy(loop.losses[0]), rtol=1e-5)


@pytest.mark.parametrize("mask_kind", ["right", "left"])
@pytest.mark.parametrize("return_state", [False, True])
def test_masks(mask_kind, return_state, fake_cudnn):
    cudnn, loop, x = _pair(return_sequences=True, return_state=return_state, use_bias=False)
    mask = _mask(mask_kind)
    out_c = cudnn(x, mask=mask)
    out_l = loop(x, mask=mask)
    for a, b in zip(out_c if return_state else [out_c], out_l if return_state else [out_l]):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-5)


@pytest.mark.skipif(BACKEND != "torch", reason="Keras' PyTorch GRU kernel has a CPU fallback")
def test_keras_torch_kernel_through_the_adapter_equals_our_loop(monkeypatch):
    """Keras' real PyTorch GRU kernel (its CPU fallback here, cuDNN on a GPU): argument order,
    weight layout and return format as the adapter expects."""
    monkeypatch.setattr(_backend, "gpu_available", lambda: True)
    cudnn, loop, x = _pair(return_sequences=True, return_state=True,
                           perturbations=[DropConnect(0.4, per="sequence")])
    assert cudnn_path(cudnn)[0]
    out_c, grads_c = value_and_grads(cudnn, x, training=True)
    out_l, grads_l = value_and_grads(loop, x, training=True)
    np.testing.assert_allclose(out_c, out_l, atol=1e-5)
    for g_c, g_l in zip(grads_c, grads_l):
        np.testing.assert_allclose(g_c, g_l, atol=1e-5)
    mask = _mask("right")
    for a, b in zip(cudnn(x, mask=mask), loop(x, mask=mask)):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("mask_kind", [None, "right", "left"])
def test_gpu_cudnn_equals_our_loop(mask_kind):
    cudnn, loop, x = _pair(return_sequences=True,
                           perturbations=[DropConnect(0.4, per="sequence", target="both")])
    if BACKEND == "jax":
        assert not cudnn_path(loop)[0]
        return
    assert cudnn_path(cudnn)[0], cudnn_path(cudnn)[1]
    mask = None if mask_kind is None else _mask(mask_kind)
    out_c, grads_c = value_and_grads(cudnn, x, mask=mask, training=True)
    out_l, grads_l = value_and_grads(loop, x, mask=mask, training=True)
    np.testing.assert_allclose(out_c, out_l, **tolerance(cudnn=True))
    for g_c, g_l in zip(grads_c, grads_l):
        np.testing.assert_allclose(g_c, g_l, **tolerance(cudnn=True))


# ------------------------------------------------------------------------ fused backward pass
# test_layers.py::test_fused_backward_equals_autodiff covers the GRU with the other layers.
def test_fused_only_where_it_applies():
    assert GRU(N)._manual_backward() == (BACKEND == "torch")  # where it pays (docs/benchmarks.md)
    assert not GRU(N, reset_after=False)._manual_backward()
    assert not GRU(N, recurrent_activation="hard_sigmoid")._manual_backward()
