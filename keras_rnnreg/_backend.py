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
