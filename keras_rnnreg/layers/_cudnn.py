"""Which path a recurrent layer takes: Keras' cuDNN kernel or our fused loop, and why.

The cuDNN path runs Keras' own backend kernel with the layer's kernels, perturbed *once per
sequence* before the call (AWD-LSTM's weight-dropped LSTM, Merity et al. 2018), and computes our
loop's function. Which configurations and masks take it: README, "GPU: the cuDNN path" (the
rules are :func:`config_reason` and ``_runtime_reason`` below; masks are checked per call).
"""

import keras

from keras_rnnreg import _backend


def check_use_cudnn(value):
    if not (value is True or value is False or (isinstance(value, str) and value == "auto")):
        raise ValueError(f"Invalid value for argument use_cudnn={value!r}: expected 'auto', True "
                         "or False.")
    return value


def cudnn_path(layer, training=True):
    """Which path ``layer`` takes and why: ``(True, how)`` or ``(False, reason)``.

    Args:
        layer: a keras_rnnreg recurrent layer.
        training: whether to judge a training call (perturbations active) or an inference call.

    Example::

        >>> cudnn_path(LSTM(1000, perturbations=[DropConnect(0.5, per="sequence")]))
        (True, "cuDNN: Keras' torch LSTM kernel, with the kernels perturbed once per sequence")
    """
    reason = config_reason(layer, training=training)
    if reason is None:
        reason = _runtime_reason(layer)
    if reason is not None:
        return False, reason
    backend = keras.backend.backend()
    how = f"cuDNN: Keras' {backend} {layer._cudnn_kernel.upper()} kernel"
    if training and any(p.per == "sequence" for p in getattr(layer, "perturbations", ())):
        how += ", with the kernels perturbed once per sequence"
    return True, how


def config_reason(layer, training=True):
    """Why the configuration of ``layer`` excludes the cuDNN path (None when it does not)."""
    if getattr(layer, "use_cudnn", "auto") is False:
        return "use_cudnn=False"
    if any(getattr(layer, "_zoneout_rates", ())):
        return (f"zoneout={layer.zoneout!r} (each unit mixed with its previous value at every "
                "step, in training and inference; cuDNN cannot: our loop runs)")
    if getattr(layer, "_cudnn_kernel", None) is None:
        return no_cudnn_reason(layer)
    return next(_kernel_rules(layer, training), None)


def no_cudnn_reason(layer):
    """The reason a layer type without a cuDNN kernel gives."""
    return getattr(layer, "_no_cudnn_reason", None) or f"{type(layer).__name__} has no cuDNN path"


def _kernel_rules(layer, training):
    """The reason of each broken rule, in report order (the layer's own after the activations)."""
    if layer.activation_name != "tanh":
        yield f"activation={layer.activation_name!r} (cuDNN computes tanh)"
    if layer.recurrent_activation_name != "sigmoid":
        name = layer.recurrent_activation_name
        yield f"recurrent_activation={name!r} (cuDNN computes sigmoid gates)"
    yield from layer._cudnn_equation_reasons()
    if layer.unroll:
        yield f"unroll={layer.unroll!r}"
    if layer.recurrent_dropout:
        yield (f"recurrent_dropout={layer.recurrent_dropout} (a fresh mask inside the loop; "
               "DropConnect(per='sequence') regularizes the recurrent weights and keeps cuDNN)")
    per_step = [p for p in layer.perturbations if p.per == "timestep"] if training else []
    if per_step:
        yield (f"per-timestep perturbation {per_step[0]!r} (a new weight draw every step; "
               "per='sequence' keeps cuDNN)")
    yield from layer._cudnn_output_reasons()


def _runtime_reason(layer):
    backend = keras.backend.backend()
    name = layer._cudnn_kernel
    if backend not in _backend.CUDNN_BACKENDS:
        return f"the {backend} backend has no cuDNN kernel"
    if name == "gru" and backend not in _backend.CUDNN_GRU_BACKENDS:
        return (f"Keras' {backend} backend has no cuDNN GRU kernel (its rnn.gru is a scan; "
                "jax.experimental.rnn has no GRU)")
    if _backend.keras_lstm_kernel(name) is None:
        return (f"keras.src.backend.{backend}.rnn.{name} is not in Keras {keras.__version__} "
                "(a Keras release moved it; our loop runs instead)")
    if backend == "jax" and layer.use_cudnn == "auto":
        return ("on JAX our scan is the default (as fast as cuDNN at the papers' shapes; "
                "use_cudnn=True takes jax.experimental.rnn)")
    if not _backend.gpu_available():
        return f"no GPU with cuDNN visible to {backend}"
    return None


__all__ = ["check_use_cudnn", "config_reason", "cudnn_path", "no_cudnn_reason"]
