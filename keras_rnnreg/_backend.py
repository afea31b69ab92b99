"""The one place that knows about backend differences: one small adapter module."""

import contextlib
import importlib
import math

import keras
from keras import ops

# Keras' private API, reached from here only: the base class of RNN cells that keras.layers.RNN
# draws dropout masks through, and the decorator that keeps Keras from tracking plain attributes.
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell  # noqa: F401
from keras.src.utils.tracking import no_automatic_dependency_tracking  # noqa: F401


def plain_tensor(x):
    """A tensor holding a variable's current value, not the variable itself (on TensorFlow:
    ``tf.custom_gradient`` would treat a ``tf.Variable`` as captured and demand its gradient)."""
    x = ops.convert_to_tensor(x)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.identity(x)
    return x


def scan_states(body, init, xs, unroll=1, reverse=False):
    """Run ``body(carry, x_t) -> new_carry`` over the leading axis of ``xs``; return the stacked
    carries, one (T, ...) tensor per entry of ``init`` (in time order also when ``reverse=True``).

    Every recurrent loop of the library runs here: on TensorFlow ``tf.scan`` (a loop-variable carry,
    and a bounded loop, which XLA can differentiate unlike ``keras.ops.scan``'s), elsewhere
    ``keras.ops.scan``.
    """
    init = list(init)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return list(tf.scan(lambda c, x: list(body(c, x)), xs, initializer=init, reverse=reverse))

    def step(carry, x):
        new = list(body(carry, x))
        return new, new

    return list(ops.scan(step, init, xs, unroll=unroll, reverse=reverse)[1])


# ----------------------------------------------------------------------------------- cuDNN path
# Keras' private backend kernels, reached only from here (contract checked by
# tests/layers/test_cudnn.py): ``keras.src.backend.<backend>.rnn.lstm`` takes the arguments of
# KERAS_LSTM_KERNEL_ARGS (``gru``: one initial state, ``reset_after=``) and returns
# ``(last_output, outputs, states)`` or raises NotImplementedError. Only TensorFlow's takes a mask.

CUDNN_BACKENDS = ("tensorflow", "torch", "jax")
# Keras' JAX ``gru`` is a ``lax.scan`` (jax.experimental.rnn has no GRU): not a cuDNN kernel.
CUDNN_GRU_BACKENDS = ("tensorflow", "torch")
KERAS_LSTM_KERNEL_ARGS = (
    "inputs", "initial_state_h", "initial_state_c", "mask", "kernel", "recurrent_kernel", "bias",
    "activation", "recurrent_activation", "return_sequences", "go_backwards", "unroll",
)
KERAS_BILSTM_KERNEL_ARGS = (
    "inputs", "fwd_initial_state_h", "fwd_initial_state_c", "bwd_initial_state_h",
    "bwd_initial_state_c", "mask", "fwd_kernel", "fwd_recurrent_kernel", "fwd_bias",
    "bwd_kernel", "bwd_recurrent_kernel", "bwd_bias", "activation", "recurrent_activation",
    "return_sequences", "unroll",
)


def keep_mask(shape, rate, dtype, seed):
    """0/1 tensor of ``shape`` and ``dtype``, 1 with probability ``1 − rate`` (zoneout's 1 − d_t),
    drawn from Keras' ``seed`` (a ``SeedGenerator``: same seed, same masks; each call advances it).

    The draw is most of a zoneout layer's cost on CPU (one number per step, example and unit), so
    JAX and PyTorch compare 16 random bits per number against ``round(rate · 2¹⁶)`` (the rate is
    honoured to 2⁻¹⁷), cutting several numbers from each word their generator makes: JAX two from
    threefry's 32 bits, PyTorch three from the low 48 of ``random_``'s 63 (the top 16 hold 15). At
    100 × 81 × 200 on 2 CPU cores: JAX 9 ms, PyTorch 4 ms, against 16 ms and 8–10 ms for
    ``keras.random.uniform`` and a comparison, which TensorFlow keeps."""
    backend = keras.backend.backend()
    size, threshold = math.prod(shape), round(rate * 65536)
    if backend == "jax":
        import jax
        from keras.src.backend.jax.random import jax_draw_seed

        words = jax.random.bits(jax_draw_seed(seed), ((size + 1) // 2,), "uint32")
        draws = jax.lax.bitcast_convert_type(words, "uint16").reshape(-1)[:size]
        return ops.cast(ops.reshape(draws >= threshold, shape), dtype)
    if backend == "torch":
        import torch
        from keras.src.backend.torch.core import get_device, to_torch_dtype
        from keras.src.backend.torch.random import torch_seed_generator

        words = torch.empty((size + 2) // 3, dtype=torch.int64, device=get_device())
        words.random_(generator=torch_seed_generator(seed))
        # int16 views of the low three chunks, uniform on [-2¹⁵, 2¹⁵): threshold shifted to match
        draws = words.view(torch.int16).view(-1, 4)[:, :3].reshape(-1)[:size].view(shape)
        return (draws >= threshold - 32768).to(to_torch_dtype(dtype))
    return ops.cast(keras.random.uniform(shape, dtype=dtype, seed=seed) >= rate, dtype)


def keras_lstm_kernel(name="lstm"):
    """Keras' kernel ``keras.src.backend.<backend>.rnn.<name>`` (``lstm``, ``bidirectional_lstm``,
    ``gru``), or None where this backend has no such cuDNN kernel or this Keras release moved it."""
    backend = keras.backend.backend()
    if backend not in (CUDNN_GRU_BACKENDS if name == "gru" else CUDNN_BACKENDS):
        return None
    try:
        module = importlib.import_module(f"keras.src.backend.{backend}.rnn")
    except ImportError:
        return None
    return getattr(module, name, None)


def gpu_available():
    """Whether the running backend computes on a GPU with cuDNN (what Keras' kernels check)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # Physical devices: listing them does not initialize the runtime (logical ones would).
        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available() and torch.backends.cudnn.is_available())
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    return False


def kernel_takes_mask():
    """Whether Keras' kernel of the running backend accepts a (right-padded) mask itself."""
    return keras.backend.backend() == "tensorflow"


def right_padded(mask):
    """Scalar bool tensor: every row of the (B, T) ``mask`` is k ≥ 1 valid steps then padding
    (what cuDNN's sequence lengths can express; Keras' TensorFlow kernel asserts the same)."""
    valid = ops.cast(mask, "int32")
    steps, lengths = _steps_and_lengths(mask)
    expected = ops.cast(steps < lengths, "int32")
    return ops.logical_and(ops.all(ops.equal(valid, expected)), ops.all(lengths > 0))


def _steps_and_lengths(mask):
    """(1, T) step indices and (B, 1) valid lengths of a (B, T) ``mask``."""
    steps = ops.expand_dims(ops.arange(ops.shape(mask)[1], dtype="int32"), 0)
    return steps, ops.expand_dims(ops.sum(ops.cast(mask, "int32"), axis=1), 1)


def _bias_or_zeros(bias, kernel, rows=()):
    """cuDNN always adds a bias: zeros for a layer without one (``use_bias=False``)."""
    return ops.zeros((*rows, kernel.shape[-1]), dtype=kernel.dtype) if bias is None else bias


def _run_kernel(kernel_fn, inputs, states, kernel, recurrent_kernel, bias, mask, **extra):
    """``(sequence, final_states)`` of a Keras kernel, zeros at padded steps; where the kernel took
    no mask, the hidden state at each row's last valid step and None for the others."""
    pass_mask = mask is not None and kernel_takes_mask()
    _, sequence, final = kernel_fn(
        inputs, *states, mask if pass_mask else None, kernel=kernel,
        recurrent_kernel=recurrent_kernel, bias=bias, activation=keras.activations.tanh,
        recurrent_activation=keras.activations.sigmoid, return_sequences=True,
        go_backwards=False, unroll=False, **extra,
    )
    final = list(final)
    if mask is not None:
        sequence = sequence * ops.expand_dims(ops.cast(mask, sequence.dtype), -1)
        if not pass_mask:  # right padding: the last valid state is in the sequence
            final = [_last_valid(sequence, mask)] + [None] * (len(final) - 1)
    return sequence, final


def cudnn_lstm(inputs, h0, c0, kernel, recurrent_kernel, bias, mask=None):
    """Run Keras' cuDNN LSTM kernel on batch-major ``inputs`` (B, T, F) with the given (possibly
    perturbed) kernels, as ``keras.layers.LSTM``; ``mask`` right-padded (:func:`right_padded`).

    Returns ``(sequence, h_T, c_T)``: the hidden sequence with zeros at padded steps and the states
    at each row's last valid step (``c_T`` None where the kernel took no mask: PyTorch, JAX).
    Raises NotImplementedError when the kernel cannot run (moved, no GPU on TensorFlow / JAX).
    """
    kernel_fn = keras_lstm_kernel()
    if kernel_fn is None:
        raise NotImplementedError(f"keras.src.backend.{keras.backend.backend()}.rnn.lstm is not "
                                  f"in Keras {keras.__version__}")
    sequence, (h, c) = _run_kernel(
        kernel_fn, inputs, (h0, c0), kernel, recurrent_kernel, _bias_or_zeros(bias, kernel), mask
    )
    return sequence, h, c


def cudnn_gru(inputs, h0, kernel, recurrent_kernel, bias, mask=None):
    """Run Keras' cuDNN GRU kernel (TensorFlow and PyTorch) as :func:`cudnn_lstm`: tanh /
    sigmoid, ``reset_after=True``, gates (z, r, h) and bias (2, 3N) as ``keras.layers.GRU``.

    Returns ``(sequence, h_T)``. Raises NotImplementedError when the kernel cannot run.
    """
    kernel_fn = keras_lstm_kernel("gru")
    if kernel_fn is None:
        raise NotImplementedError(f"no cuDNN GRU kernel in Keras {keras.__version__}'s "
                                  f"{keras.backend.backend()} backend")
    bias = _bias_or_zeros(bias, kernel, rows=(2,))
    sequence, (h,) = _run_kernel(
        kernel_fn, inputs, (h0,), kernel, recurrent_kernel, bias, mask, reset_after=True
    )
    return sequence, h


def _last_valid(sequence, mask):
    """Each row's state at its last valid step of a right-padded (B, T) ``mask``."""
    steps, lengths = _steps_and_lengths(mask)
    last = ops.cast(ops.equal(steps, lengths - 1), sequence.dtype)
    return ops.sum(sequence * ops.expand_dims(last, -1), axis=1)


def cudnn_bidirectional_lstm(inputs, forward_weights, backward_weights):
    """Both directions of a bidirectional LSTM in one cuDNN call (Keras' ``bidirectional_lstm``,
    PyTorch and JAX), zero initial states, no mask; ``*_weights`` are (kernel, recurrent_kernel,
    bias or None). Returns ``(forward_sequence, backward_sequence)``, both in time order. Raises
    NotImplementedError where the kernel cannot run (TensorFlow, no GPU, moved).
    """
    kernel_fn = keras_lstm_kernel("bidirectional_lstm")
    if kernel_fn is None:
        raise NotImplementedError("no bidirectional_lstm kernel in this Keras backend")
    units = forward_weights[1].shape[0]
    zeros = ops.zeros((ops.shape(inputs)[0], units), dtype=forward_weights[0].dtype)
    (fwd_kernel, fwd_recurrent, fwd_bias), (bwd_kernel, bwd_recurrent, bwd_bias) = (
        forward_weights, backward_weights)
    (_, forward, _), (_, backward, _) = kernel_fn(
        inputs, zeros, zeros, zeros, zeros, None, fwd_kernel=fwd_kernel,
        fwd_recurrent_kernel=fwd_recurrent, fwd_bias=_bias_or_zeros(fwd_bias, fwd_kernel),
        bwd_kernel=bwd_kernel, bwd_recurrent_kernel=bwd_recurrent,
        bwd_bias=_bias_or_zeros(bwd_bias, bwd_kernel), activation=keras.activations.tanh,
        recurrent_activation=keras.activations.sigmoid, return_sequences=True, unroll=False,
    )
    return forward, backward


# Keras' load_model keeps an id()-keyed ObjectSharingScope open: layers built fresh in from_config
# are recorded there, and one whose id() is that of an object freed earlier can be swapped for it
# (a Bidirectional got its forward layer back as its backward layer). Fresh builds share nothing,
# so they run outside the scope.
_SHARING_MAPS = ("shared_objects/id_to_obj_map", "shared_objects/id_to_config_map")


@contextlib.contextmanager
def outside_object_sharing():
    """Suspend Keras' object-sharing scope of ``load_model`` (restored on exit)."""
    from keras.src.backend.common import global_state

    saved = [global_state.get_global_attribute(key) for key in _SHARING_MAPS]
    for key in _SHARING_MAPS:
        global_state.set_global_attribute(key, None)
    try:
        yield
    finally:
        for key, value in zip(_SHARING_MAPS, saved):
            global_state.set_global_attribute(key, value)


# ------------------------------------------------------------------------- multi-worker start-up
# keras_rnnreg.distribute calls ``jax.distributed.initialize`` itself (to pass a timeout) and
# configures TensorFlow's coordination service before ``MultiWorkerMirroredStrategy`` does (which
# has no start-up timeout). Contract (tests/test_distribute_startup.py): Keras' JAX ``initialize``
# is ``jax.distributed.initialize`` then ``initialize_rng()``; the strategy configures the service
# only when ``context.context().coordination_service`` is None.


def keras_after_jax_distributed_initialize():
    """What ``keras.distribution.initialize`` does after ``jax.distributed.initialize``: one seed
    for every process where no global seed is set (Keras' private ``initialize_rng``)."""
    from keras.src.backend.jax import distribution_lib

    distribution_lib.initialize_rng()


def tf_bound_cluster_registration(leader, jobs, seconds):
    """Configure TensorFlow's coordination service as ``MultiWorkerMirroredStrategy`` would
    (``leader`` like ``/job:worker/replica:0/task:0``; ``jobs``: name -> number of tasks), plus a
    registration barrier of ``seconds``: without it a task that never registers keeps the others
    waiting forever; with it they raise ``DeadlineExceededError`` naming the tasks that did not."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    ctx = context.context()
    if ctx.coordination_service is not None:  # configured by the caller: leave it alone
        return
    ctx.configure_coordination_service(
        "standalone", service_leader=leader, cluster_register_timeout_in_ms=int(seconds * 1000),
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=name, num_tasks=count)
                          for name, count in jobs.items()])
    ctx.coordination_service.cluster_register_with_barrier = True
