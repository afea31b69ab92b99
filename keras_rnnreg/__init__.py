"""keras-rnnreg: regularized recurrent networks for Keras 3.

Layers, perturbations, penalties, initializers and constraints from two papers on RNN regularization
("Regularizing Recurrent Networks", and Krueger & Memisevic, "Regularizing RNNs by Stabilizing
Activations"), written with ``keras.ops`` only so they run on TensorFlow, JAX and PyTorch.

``import keras_rnnreg`` registers every serializable class (layers, perturbations, penalties,
initializers, constraints, metrics, the zoo's losses and heads) with ``keras.saving``, so that a
saved model loads with ``keras.saving.load_model`` after this import alone. The other submodules
(``callbacks``, ``data``, ``tuning``, ``cli``) are imported on first use.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("activations", "callbacks", "cli", "constraints", "data", "distribute",
               "initializers", "layers", "metrics", "optimizers", "perturbations", "regularizers",
               "tuning", "zoo")

__all__ = list(_SUBMODULES)

# Importing these registers their classes for deserialization (see the module docstring).
from keras_rnnreg import (  # noqa: E402, F401
    activations,
    constraints,
    initializers,
    layers,
    metrics,
    optimizers,
    perturbations,
    regularizers,
    zoo,
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'keras_rnnreg' has no attribute {name!r}")
