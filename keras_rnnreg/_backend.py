"""The one place that knows about backend differences (DESIGN.md: "one small adapter module")."""

import keras
from keras import ops


def plain_tensor(x):
    """A tensor holding a variable's current value, not the variable itself.

    ``tf.custom_gradient`` treats a ``tf.Variable`` argument as a captured variable and then
    demands a ``variables=`` gradient; reading it into a tensor first avoids that. JAX and
    PyTorch need no copy.
    """
    x = ops.convert_to_tensor(x)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.identity(x)
    return x


def scan_states(body, init, xs, unroll=1):
    """Run ``body(carry, x_t) -> (carry, carry)`` over the leading axis of ``xs`` and return the
    stacked carries (a list of (T, ...) tensors, one per carry entry).

    ``keras.ops.scan`` on TensorFlow builds a ``tf.while_loop`` over TensorArrays without
    ``maximum_iterations``, which XLA cannot differentiate ("…while/Placeholder…/accumulator"),
    and Keras turns XLA on by itself where a GPU is present. ``tf.scan`` bounds its loop and
    differentiates under XLA, and its stacked accumulators are exactly the stacked carries.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return list(tf.scan(lambda carry, x: body(carry, x)[0], xs, initializer=list(init)))
    return list(ops.scan(body, list(init), xs, unroll=unroll)[1])
