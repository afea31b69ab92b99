"""The spectral radius of every recurrent kernel in the epoch logs (noise study, Figs. 5-7).

The largest |eigenvalue| of W_hh over training (exact: ``numpy.linalg.eigvals``). Place
:class:`SpectralRadiusLogger` *before* ``CSVLogger`` / ``TensorBoard`` among the callbacks: Keras
hands them the same ``logs`` dict in order.
"""

import keras
import numpy as np

__all__ = ["SpectralRadiusLogger", "recurrent_layers", "spectral_radii"]

_GATE_NAMES = {4: ("i", "f", "c", "o"), 3: ("z", "r", "h")}


def recurrent_kernel(layer):
    """The recurrent kernel variable of a layer (ours, or Keras' RNN layers via ``.cell``)."""
    kernel = getattr(layer, "recurrent_kernel", None)
    if kernel is None:
        kernel = getattr(getattr(layer, "cell", None), "recurrent_kernel", None)
    return kernel


def _walk(layers, prefix=""):
    """(key, recurrent layer) of recurrent layers, descending into models and Bidirectional."""
    for layer in layers:
        if isinstance(layer, keras.layers.Bidirectional):
            name = f"{prefix}{layer.name}"
            yield f"{name}/forward", layer.forward_layer
            yield f"{name}/backward", layer.backward_layer
        elif recurrent_kernel(layer) is not None:
            yield f"{prefix}{layer.name}", layer
        elif isinstance(layer, keras.Model):
            yield from _walk(layer.layers, prefix=f"{prefix}{layer.name}/")


def recurrent_layers(model):
    """``{key: layer}`` of a model's recurrent layers, as :class:`SpectralRadiusLogger` names them.

    A plain recurrent layer is keyed by its name, the directions of a ``Bidirectional`` wrapper by
    "<wrapper name>/forward" and "<wrapper name>/backward", layers of nested models by
    "<model name>/<layer name>".
    """
    return dict(_walk(model.layers))


def spectral_radii(kernel):
    """Spectral radius of a recurrent kernel: a float for (n, n), a list per gate for (n, k·n).

    NaN for a block with a non-finite entry (a diverged kernel has no eigenvalues).
    """
    w = np.asarray(keras.ops.convert_to_numpy(kernel), dtype=np.float64)
    if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] % w.shape[0]:
        raise ValueError("Expected a recurrent kernel of shape (n, n) or (n, k*n); received "
                         f"shape={w.shape}.")
    n = w.shape[0]
    blocks = [w[:, j * n : (j + 1) * n] for j in range(w.shape[1] // n)]
    radii = [
        float(np.max(np.abs(np.linalg.eigvals(b)))) if np.isfinite(b).all() else float("nan")
        for b in blocks
    ]
    return radii[0] if len(radii) == 1 else radii


class SpectralRadiusLogger(keras.callbacks.Callback):
    """Log the spectral radius (largest |eigenvalue|, exact) of recurrent kernels each epoch.

    Keys in ``logs``: ``"spectral_radius/<key>"`` (``<key>`` as in :func:`recurrent_layers`) for
    a square kernel; for gate-stacked kernels ``"spectral_radius/<key>/<gate>"`` with gates i, f,
    c, o (LSTM) or z, r, h (GRU): the candidate block ("c" / "h") plays W_hh's part.

    Args:
        layers: None (every recurrent layer of the model), or a list of keys / layer names /
            layer objects to restrict it to (a Bidirectional's name selects both directions).

    Examples:
        >>> import keras, numpy as np
        >>> from keras_rnnreg import callbacks, layers
        >>> model = keras.Sequential([keras.Input((10, 3)), layers.SimpleRNN(8, name="rnn")])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> x, y = np.zeros((4, 10, 3), "float32"), np.zeros((4, 8), "float32")
        >>> history = model.fit(x, y, epochs=2, verbose=0,
        ...                     callbacks=[callbacks.SpectralRadiusLogger()])
        >>> len(history.history["spectral_radius/rnn"])  # one value per epoch
        2
    """

    def __init__(self, layers=None):
        super().__init__()
        single = isinstance(layers, (str, keras.layers.Layer)) or not hasattr(layers, "__iter__")
        if layers is not None and single:
            layers = [layers]
        self.layers = None if layers is None else list(layers)
        self._selected = None

    def _select(self):
        found = recurrent_layers(self.model)
        if self.layers is None:
            return found
        selected = {}
        for item in self.layers:
            matches = {key: layer for key, layer in found.items()
                       if item is layer or item in (key, layer.name, key.rsplit("/", 1)[0])}
            if not matches:
                raise ValueError(f"SpectralRadiusLogger: no recurrent layer matches {item!r} in "
                                 f"layers=; the model's recurrent layers are {sorted(found)}.")
            selected.update(matches)
        return selected

    def radii(self):
        """``{log key: spectral radius}`` for the current weights."""
        if self._selected is None:
            self._selected = self._select()
        out = {}
        for key, layer in self._selected.items():
            kernel = recurrent_kernel(layer)
            if kernel is None:  # not built
                continue
            radii = spectral_radii(kernel)
            if isinstance(radii, float):
                out[f"spectral_radius/{key}"] = radii
            else:
                names = _GATE_NAMES.get(len(radii), tuple(f"block{j}" for j in range(len(radii))))
                for name, value in zip(names, radii):
                    out[f"spectral_radius/{key}/{name}"] = value
        return out

    def on_train_begin(self, logs=None):
        self._selected = self._select()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.radii())
