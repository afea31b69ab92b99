"""One decorator that registers a public class for Keras serialization."""

import keras

PACKAGE = "keras_rnnreg"


def serializable(obj):
    """Register ``obj`` with ``keras.saving`` under the ``keras_rnnreg>`` prefix."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(obj)
