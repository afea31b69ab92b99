"""Backend-specific gradient helper for tests: d(sum(w * f(inputs)))/d(trainable variables)."""

import keras
import numpy as np


def _flat(out):
    ops = keras.ops
    if isinstance(out, (list, tuple)):
        out = keras.tree.flatten(out)  # nested: StackedRNNCells' states
        return ops.concatenate([ops.reshape(o, (ops.shape(o)[0], -1)) for o in out], axis=1)
    return ops.reshape(out, (ops.shape(out)[0], -1))


def _np(x):
    """A host NumPy copy of a backend tensor on any device (CUDA tensors refuse np.asarray)."""
    return np.asarray(keras.ops.convert_to_numpy(x))


def _weights(n):
    return keras.ops.sin(keras.ops.arange(n, dtype="float32") * 0.37 + 0.1)


def value_and_grads(layer, *args, **kwargs):
    """Output (numpy) and gradients (list of numpy, in trainable_variables order)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            out = _flat(layer(*args, **kwargs))
            loss = keras.ops.sum(out * _weights(out.shape[-1]))
        grads = tape.gradient(loss, [v.value for v in layer.trainable_variables])
        return _np(out), [_np(g) for g in grads]
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def f(tv):
            out, _ = layer.stateless_call(tv, non_trainable, *args, **kwargs)
            out = _flat(out)
            return keras.ops.sum(out * _weights(out.shape[-1])), out

        (_, out), grads = jax.value_and_grad(f, has_aux=True)(trainable)
        return _np(out), [_np(g) for g in grads]
    for v in layer.trainable_variables:
        v.value.grad = None
    out = _flat(layer(*args, **kwargs))
    loss = keras.ops.sum(out * _weights(out.shape[-1]))
    loss.backward()
    return _np(out.detach()), [_np(v.value.grad) for v in layer.trainable_variables]
