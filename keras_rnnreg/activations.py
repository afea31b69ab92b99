"""Activations used by the recurrent layers, beyond Keras' own.

``"trec"``: the thresholded rectifier of Konda, Memisevic & Krueger (2014), f(x) = x where x > θ,
else 0. With θ = 0 (norm-stabilizer paper, Sec. 2.1: "the zero-bias ReLU (i.e. TRec with threshold
0)") its values are ReLU's; a TRec layer has no hidden bias, so our layers drop theirs for it.
"""

import keras
from keras import ops

from keras_rnnreg._api import serializable

__all__ = ["get", "serialize", "trec"]


@serializable
def trec(x, threshold=0.0):
    """Thresholded rectifier: ``x`` where ``x > threshold``, else 0.

    Examples:
        >>> import keras
        >>> from keras_rnnreg.activations import trec
        >>> keras.ops.convert_to_numpy(trec(keras.ops.convert_to_tensor([-1.0, 0.5, 2.0]), 1.0))
        array([0., 0., 2.], dtype=float32)
        >>> from keras_rnnreg import layers
        >>> rnn = layers.SimpleRNN(8, activation="trec")  # by name, in this package's layers
    """
    x = ops.convert_to_tensor(x)
    return ops.where(x > threshold, x, ops.zeros_like(x))


def get(identifier, argument="activation"):
    """Resolve an activation name or callable (``None``: linear); ValueError naming ``argument``
    and the value for an unknown name."""
    if isinstance(identifier, str) and identifier == "trec":
        return trec
    try:
        return keras.activations.get(identifier)
    except (ValueError, TypeError) as err:
        raise ValueError(f"Unknown {argument}={identifier!r}: expected a Keras activation name "
                         f"(e.g. 'tanh', 'relu', 'sigmoid'), 'trec', or a callable.") from err


def serialize(fn):
    """Name of an activation for get_config (Keras' names, or 'trec')."""
    return "trec" if fn is trec else keras.activations.serialize(fn)
