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


def scan_states(body, init, xs, unroll=1, reverse=False):
    """Run ``body(carry, x_t) -> new_carry`` over the leading axis of ``xs`` and return the stacked
    carries: a list of (T, ...) tensors, one per entry of the ``init`` list (in time order also
    when ``reverse=True``).

    Every recurrent loop of the library goes through here. On TensorFlow it is ``tf.scan``: a
    ``tf.while_loop`` whose carry is a loop variable (``keras.ops.scan`` round-trips the carry
    through a TensorArray every step: more ops per step in graph mode) with bounded iterations
    (``keras.ops.scan``'s unbounded loop cannot be differentiated under XLA, which Keras turns on by
    itself where a GPU is present). Elsewhere it is ``keras.ops.scan``.
    """
    init = list(init)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return list(
            tf.scan(lambda carry, x: list(body(carry, x)), xs, initializer=init, reverse=reverse)
        )

    def step(carry, x):
        new = list(body(carry, x))
        return new, new

    return list(ops.scan(step, init, xs, unroll=unroll, reverse=reverse)[1])
