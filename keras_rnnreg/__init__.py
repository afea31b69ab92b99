"""keras-rnnreg: regularized recurrent networks for Keras 3.

Layers, perturbations, penalties, initializers and constraints from two papers on RNN regularization
("Regularizing Recurrent Networks", and Krueger & Memisevic, "Regularizing RNNs by Stabilizing
Activations"), written with ``keras.ops`` only so they run on TensorFlow, JAX and PyTorch.

``import keras_rnnreg`` registers every serializable class with ``keras.saving``, so that a saved
model loads with ``keras.saving.load_model`` after this import alone; the other submodules are
imported on first use. The ``rnnreg`` command registers after parsing its arguments (so that
``rnnreg --help`` answers before Keras is imported).
"""

import importlib
import os
import sys

__version__ = "0.1.0"

_SUBMODULES = ("activations", "callbacks", "cli", "constraints", "data", "distribute",
               "initializers", "layers", "metrics", "optimizers", "perturbations", "regularizers",
               "tuning", "zoo")

__all__ = list(_SUBMODULES)

_REGISTERING = ("activations", "constraints", "initializers", "layers", "metrics", "optimizers",
                "perturbations", "regularizers", "zoo")


def _register():
    """Import the submodules whose classes are registered for deserialization (see above)."""
    for name in _REGISTERING:
        importlib.import_module(f"{__name__}.{name}")


def _is_command_line():
    """Started as ``rnnreg`` or ``python -m keras_rnnreg``: keras_rnnreg.cli registers after
    parsing its arguments."""
    argv = getattr(sys, "orig_argv", sys.argv)
    return (os.path.basename(sys.argv[0] if sys.argv else "") == "rnnreg"
            or any(a == "-m" and b == __name__ for a, b in zip(argv, argv[1:])))


if not _is_command_line():
    _register()


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'keras_rnnreg' has no attribute {name!r}")
