"""keras-rnnreg: regularized recurrent networks for Keras 3.

Layers, perturbations, penalties, initializers and constraints from two papers on RNN
regularization ("Regularizing Recurrent Networks", and Krueger & Memisevic, "Regularizing RNNs by
Stabilizing Activations"), written with ``keras.ops`` only so they run on TensorFlow, JAX and
PyTorch. Submodules are imported on first use, so ``import keras_rnnreg`` stays light.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "activations",
    "callbacks",
    "cli",
    "constraints",
    "data",
    "distribute",
    "initializers",
    "layers",
    "metrics",
    "perturbations",
    "regularizers",
    "tuning",
    "zoo",
)

__all__ = list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'keras_rnnreg' has no attribute {name!r}")
