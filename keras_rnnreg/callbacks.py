"""Diagnostics of recurrent networks during training: spectral radii and hidden-state norms.

* :class:`SpectralRadiusLogger` writes the spectral radius of every recurrent kernel into the epoch
  ``logs`` (the noise study's Figs. 5–7: the largest eigenvalue of W_hh over training, stuck low
  under noise / DropConnect, still growing under norm-based penalties), so that
  ``keras.callbacks.CSVLogger`` / ``TensorBoard`` / ``History`` record it.
* :func:`hidden_norms` runs a recurrent layer over (possibly much longer than training) sequences and
  returns the batch-averaged ‖h_t‖₂ at every timestep, and for the LSTM optionally ‖c_t‖₂ (the
  norm-stabilizer paper, Sec. 2.4, Figs. 3–5: norms beyond the training horizon).
* :class:`HiddenNormProbe` calls it at epoch ends and logs the mean norm at the training length and
  at the last timestep.

Callbacks run eagerly, so NumPy is used here (exact eigenvalues with ``numpy.linalg.eigvals``).
Place these callbacks *before* ``CSVLogger`` / ``TensorBoard`` in the ``callbacks`` list: Keras
hands the same ``logs`` dict to the callbacks in order.
"""

import numbers

import keras
import numpy as np

_GATE_NAMES = {4: ("i", "f", "c", "o"), 3: ("z", "r", "h")}


def _recurrent_kernel(layer):
    """The recurrent kernel variable of a layer (ours, or Keras' RNN layers via ``.cell``)."""
    for owner in (layer, getattr(layer, "cell", None)):
        kernel = getattr(owner, "recurrent_kernel", None) if owner is not None else None
        if kernel is not None:
            return kernel
    return None


def _walk(layers, prefix=""):
    """Yield (key, recurrent layer) for recurrent layers, descending into models and Bidirectional."""
    for layer in layers:
        if isinstance(layer, keras.layers.Bidirectional):
            name = f"{prefix}{layer.name}"
            yield f"{name}/forward", layer.forward_layer
            yield f"{name}/backward", layer.backward_layer
        elif _recurrent_kernel(layer) is not None:
            yield f"{prefix}{layer.name}", layer
        elif isinstance(layer, keras.Model):
            yield from _walk(layer.layers, prefix=f"{prefix}{layer.name}/")


def recurrent_layers(model):
    """``{key: layer}`` of the recurrent layers of a model, as :class:`SpectralRadiusLogger` names them.

    A plain recurrent layer is keyed by its name, the directions of a ``Bidirectional`` wrapper by
    "<wrapper name>/forward" and "<wrapper name>/backward", layers of nested models by
    "<model name>/<layer name>".
    """
    return dict(_walk(model.layers))


def spectral_radii(kernel):
    """Spectral radius of a recurrent kernel: a float for (n, n), a list per gate block for (n, k·n).

    NaN for a block with a non-finite entry.
    """
    w = np.asarray(keras.ops.convert_to_numpy(kernel), dtype=np.float64)
    if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] % w.shape[0]:
        raise ValueError(
            f"Expected a recurrent kernel of shape (n, n) or (n, k*n); received shape={w.shape}."
        )
    n = w.shape[0]
    blocks = [w[:, j * n : (j + 1) * n] for j in range(w.shape[1] // n)]
    # A diverged kernel (NaN / inf, e.g. the epoch NaNRestart throws away) has no eigenvalues.
    radii = [float(np.max(np.abs(np.linalg.eigvals(b)))) if np.isfinite(b).all() else float("nan")
             for b in blocks]
    return radii[0] if len(radii) == 1 else radii


class SpectralRadiusLogger(keras.callbacks.Callback):
    """Log the spectral radius (largest |eigenvalue|, exact, NumPy) of recurrent kernels each epoch.

    Keys in ``logs``: ``"spectral_radius/<key>"`` for a square recurrent kernel (SimpleRNN), with
    ``<key>`` as in :func:`recurrent_layers` (both directions of a ``Bidirectional``). For
    gate-stacked kernels every gate's square block is logged:
    ``"spectral_radius/<key>/<gate>"`` with gates i, f, c, o (LSTM) or z, r, h (GRU) — the
    candidate block ("c" / "h") is the one that plays W_hh's part in a plain RNN.

    Args:
        layers: None (every recurrent layer of the model), or a list of keys / layer names /
            layer objects to restrict it to (a Bidirectional's name selects both directions).
    """

    def __init__(self, layers=None):
        super().__init__()
        if layers is not None and (isinstance(layers, (str, keras.layers.Layer)) or not hasattr(layers, "__iter__")):
            layers = [layers]
        self.layers = None if layers is None else list(layers)
        self._selected = None

    def _select(self):
        found = recurrent_layers(self.model)
        if self.layers is None:
            return found
        selected = {}
        for item in self.layers:
            matches = {
                key: layer
                for key, layer in found.items()
                if layer is item or key == item or layer.name == item or key.rsplit("/", 1)[0] == item
            }
            if not matches:
                raise ValueError(
                    f"SpectralRadiusLogger: no recurrent layer matches {item!r} in layers=; the "
                    f"model's recurrent layers are {sorted(found)}."
                )
            selected.update(matches)
        return selected

    def radii(self):
        """``{log key: spectral radius}`` for the current weights."""
        if self._selected is None:
            self._selected = self._select()
        out = {}
        for key, layer in self._selected.items():
            kernel = _recurrent_kernel(layer)
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


# ---------------------------------------------------------------------------------- hidden norms
def _find_layer(model_or_layer, layer_name):
    if isinstance(model_or_layer, keras.Model):
        model = model_or_layer
        if layer_name is None:
            found = [layer for layer in model.layers if _recurrent_kernel(layer) is not None]
            if not found:
                raise ValueError(
                    f"hidden_norms: model {model.name!r} has no recurrent layer at its top level; "
                    "pass layer_name=."
                )
            return model, found[0]
        try:
            return model, model.get_layer(layer_name)
        except ValueError as err:
            raise ValueError(f"hidden_norms: no layer named layer_name={layer_name!r} in model {model.name!r}.") from err
    if isinstance(model_or_layer, keras.layers.Layer):
        return None, model_or_layer
    raise ValueError(
        f"hidden_norms expects a keras.Model or a recurrent layer; received {model_or_layer!r}."
    )


def _sequence_copy(layer, cells):
    """A fresh layer from ``layer``'s config returning the full hidden (and cell) sequence."""
    if isinstance(layer, keras.layers.Bidirectional):
        raise ValueError(
            f"hidden_norms: {layer.name!r} is Bidirectional; probe one direction, e.g. "
            f"{layer.name}.forward_layer."
        )
    if _recurrent_kernel(layer) is None and not hasattr(layer, "return_sequences"):
        raise ValueError(f"hidden_norms: layer {layer.name!r} is not a recurrent layer.")
    config = layer.get_config()
    config.update({"return_sequences": True, "return_state": False})
    if "stateful" in config:
        config["stateful"] = False
    if "state_regularizer" in config:
        config["state_regularizer"] = None
    if "return_variance" in config:
        config["return_variance"] = False
    if cells:
        if "return_cell_sequence" not in config:
            raise ValueError(
                f"hidden_norms(cells=True) needs a layer with return_cell_sequence "
                f"(keras_rnnreg.layers.LSTM); {layer.name!r} is a {type(layer).__name__}."
            )
        config["return_cell_sequence"] = True
    config["name"] = f"{layer.name}_norm_probe"
    return type(layer).from_config(config)


class _Probe:
    """A copy of a recurrent layer (inside the model's graph when there is one) for norm probing.

    When the layer sits behind other layers of a model whose input has a fixed time dimension,
    the model is cloned on an input with a free time dimension (weights copied at every sync), so
    that probe sequences may be longer than the training ones.
    """

    def __init__(self, model, layer, cells):
        self.layer = layer
        self.cells = cells
        self.copy = _sequence_copy(layer, cells)
        self.model = None
        self.source, self.clone = None, None
        if model is not None:
            symbolic_input = self._layer_input(model, layer)
            if not any(symbolic_input is t for t in model.inputs):
                graph = model
                if any(t.shape[1] is not None for t in model.inputs if len(t.shape) > 1):
                    graph = self._clone_with_free_length(model)
                    symbolic_input = self._layer_input(graph, graph.get_layer(layer.name))
                self.model = keras.Model(graph.input, self.copy(symbolic_input))
        self.synced = False

    @staticmethod
    def _layer_input(model, layer):
        try:
            symbolic_input = layer.input
        except (AttributeError, ValueError) as err:
            raise ValueError(
                f"hidden_norms: cannot locate the input of layer {layer.name!r} in model "
                f"{model.name!r} (a model built without keras.Input, or a shared layer); pass "
                "the layer itself and its input sequences."
            ) from err
        if isinstance(symbolic_input, (list, tuple)):
            # [sequences, mask or initial states...] when the layer got more than one tensor; the
            # sequences carry their Keras mask, which the copy picks up when called on them.
            symbolic_input = symbolic_input[0]
        return symbolic_input

    def _clone_with_free_length(self, model):
        if len(model.inputs) != 1:
            raise ValueError(
                f"hidden_norms: model {model.name!r} has several inputs with a fixed time "
                "dimension; build it with keras.Input((None, features)) or probe the layer itself."
            )
        spec = model.inputs[0]
        free = keras.Input(batch_shape=(None, None, *spec.shape[2:]), dtype=spec.dtype)
        self.source = model
        self.clone = keras.models.clone_model(model, input_tensors=free)
        return self.clone

    def sync(self):
        if self.clone is not None:
            self.clone.set_weights(self.source.get_weights())
        if not self.copy.built:
            return
        self.copy.set_weights(self.layer.get_weights())
        self.synced = True

    def __call__(self, inputs, mask=None):
        if not self.copy.built:
            self.copy.build(tuple(keras.ops.shape(inputs)))
        if not self.synced:
            self.sync()
        if self.model is not None:
            out = self.model(inputs, training=False)
        else:
            out = self.copy(inputs, mask=mask, training=False)
        return out if isinstance(out, (list, tuple)) else [out]


def _batch_mean_norms(sequences, mask):
    norms = np.linalg.norm(np.asarray(keras.ops.convert_to_numpy(sequences), np.float64), axis=-1)
    weights = np.ones_like(norms) if mask is None else mask
    return (norms * weights).sum(0), weights.sum(0)


def _norms(probe, inputs, mask=None, batch_size=None):
    inputs = np.asarray(inputs) if not hasattr(inputs, "shape") else inputs
    batch = int(inputs.shape[0])
    mask_np = None if mask is None else np.asarray(keras.ops.convert_to_numpy(mask), np.float64)
    step = batch if batch_size is None else int(batch_size)
    totals, counts = None, None
    for start in range(0, batch, step):
        chunk_mask = None if mask is None else mask_np[start : start + step]
        outs = probe(inputs[start : start + step], mask=None if mask is None else chunk_mask > 0)
        parts = [_batch_mean_norms(o, chunk_mask) for o in outs[: 2 if probe.cells else 1]]
        if totals is None:
            totals = [p[0] for p in parts]
            counts = [p[1] for p in parts]
        else:
            totals = [t + p[0] for t, p in zip(totals, parts)]
            counts = [c + p[1] for c, p in zip(counts, parts)]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = [t / c for t, c in zip(totals, counts)]
    return (means[0], means[1]) if probe.cells else means[0]


def hidden_norms(model_or_layer, inputs, layer_name=None, cells=False, mask=None, batch_size=None):
    """Batch-averaged ‖h_t‖₂ per timestep of a recurrent layer (norm-stabilizer paper, Figs. 3–5).

    A copy of the layer is built from its config with ``return_sequences=True`` (and, with
    ``cells=True``, ``return_cell_sequence=True``; no ``state_regularizer``), the weights are
    copied, and it runs in inference mode (``training=False``: no dropout or weight noise) over
    ``inputs`` — which may be longer than the training sequences.

    Args:
        model_or_layer: a ``keras.Model`` (the layer is found by ``layer_name``, default: the
            first recurrent layer; ``inputs`` are the *model's* inputs and run through the layers
            before it, masks included) or a recurrent layer (``inputs`` are its own inputs, e.g.
            ``bidirectional.forward_layer``).
        inputs: (batch, time, features) array.
        layer_name: name of the layer in the model.
        cells: also return the memory-cell norms ‖c_t‖₂ (``keras_rnnreg.layers.LSTM`` only).
        mask: optional (batch, time) array; padded entries are left out of the batch average (and
            passed to the layer when probing a layer directly).
        batch_size: run in chunks of this many sequences (default: all at once).

    Returns:
        A (time,) float64 array of mean hidden norms, or ``(hidden, cell)`` with ``cells=True``.
    """
    model, layer = _find_layer(model_or_layer, layer_name)
    return _norms(_Probe(model, layer, cells), inputs, mask=mask, batch_size=batch_size)


class HiddenNormProbe(keras.callbacks.Callback):
    """Log hidden-state norms beyond the training horizon at epoch ends (norm-stabilizer, Sec. 2.4).

    Every ``every`` epochs (after epochs every−1, 2·every−1, …; 0-based), runs
    :func:`hidden_norms` on ``inputs`` for ``layer_name`` and writes into ``logs``:

    * ``"hidden_norm/<layer>/last"``: mean ‖h_T‖₂ at the last timestep of ``inputs``;
    * ``"hidden_norm/<layer>/at_training_length"``: mean ‖h_t‖₂ at t = ``training_length``;
    * with ``cells=True``, the same for ``"cell_norm/<layer>/..."``.

    The whole curves are kept in ``self.history``: ``{epoch: norms}`` (``(hidden, cell)`` with
    cells), for plots like the paper's Figs. 3–5.

    Args:
        inputs: probe sequences for the model's input, typically longer than the training ones.
        layer_name: the recurrent layer of the model to probe.
        every: probe every this many epochs.
        training_length: the training sequence length; default: the time dimension of the model
            input (an error at the start of training if that is not fixed).
        cells: also probe the LSTM memory cells.
        mask: optional (batch, time) mask for the batch average.
    """

    def __init__(self, inputs, layer_name, every=1, training_length=None, cells=False, mask=None):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"Invalid value for argument every={every!r}: expected a positive int.")
        if training_length is not None and (
            isinstance(training_length, bool) or not isinstance(training_length, numbers.Integral) or training_length < 1
        ):
            raise ValueError(
                f"Invalid value for argument training_length={training_length!r}: expected a positive int."
            )
        self.inputs = inputs
        self.layer_name = layer_name
        self.every = int(every)
        self.training_length = None if training_length is None else int(training_length)
        self.cells = bool(cells)
        self.mask = mask
        self.history = {}
        self._probe = None

    def on_train_begin(self, logs=None):
        model, layer = _find_layer(self.model, self.layer_name)
        self._probe = _Probe(model, layer, self.cells)
        if self.training_length is None:
            length = self.model.inputs[0].shape[1] if self.model.inputs else None
            if length is None:
                raise ValueError(
                    "HiddenNormProbe: the model's input has no fixed time dimension; pass "
                    "training_length=."
                )
            self.training_length = int(length)
        if self.training_length > int(self.inputs.shape[1]):
            raise ValueError(
                f"HiddenNormProbe: training_length={self.training_length} is longer than the probe "
                f"inputs ({self.inputs.shape[1]} timesteps)."
            )

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        if self._probe is None:
            self.on_train_begin()
        self._probe.sync()
        result = _norms(self._probe, self.inputs, mask=self.mask)
        self.history[epoch] = result
        curves = {"hidden_norm": result[0], "cell_norm": result[1]} if self.cells else {"hidden_norm": result}
        if logs is not None:
            for prefix, curve in curves.items():
                logs[f"{prefix}/{self.layer_name}/last"] = float(curve[-1])
                logs[f"{prefix}/{self.layer_name}/at_training_length"] = float(curve[self.training_length - 1])


__all__ = [
    "HiddenNormProbe",
    "SpectralRadiusLogger",
    "hidden_norms",
    "recurrent_layers",
    "spectral_radii",
]


# --------------------------------------------------------------------------------------------
# Training policy


class NonFiniteLossError(RuntimeError):
    """Raised by :class:`NaNRestart` when the loss is still not finite after ``max_restarts``."""


class NaNRestart(keras.callbacks.Callback):
    """The NaN policy of the norm-stabilizer paper (Sec. 2.1): "When we encounter a NaN, we
    divide the learning rate by 2, and restart with the previous epochs parameters."

    At the start of every epoch the callback keeps a copy of the model's weights and the
    optimizer's state. When the training loss of a batch (or of the epoch) is NaN or infinite it
    stops ``fit``; at the end of that ``fit`` it restores the copy — the parameters of the previous
    epoch — multiplies the learning rate by ``factor`` and sets :attr:`restart_epoch` to the epoch
    to train again. Call ``fit`` again from there (``initial_epoch=cb.restart_epoch``), as
    :func:`fit_with_restarts` does::

        cb = NaNRestart()
        fit_with_restarts(model, data, cb, epochs=100)

    Restoring in ``on_train_end`` (after ``fit`` has written its state back to the variables)
    works the same on TensorFlow, JAX and PyTorch. After ``max_restarts`` restarts a further NaN
    raises :class:`NonFiniteLossError` (a ``RuntimeError``). Place it *first* in the callbacks
    list, so that callbacks after it can check :attr:`triggered` and skip checkpointing a NaN
    epoch.

    Args:
        factor: learning-rate multiplier on every restart (0 < factor < 1; the paper's 1/2).
        max_restarts: restarts allowed in all (≥ 0).
        monitor: the log key to check (default "loss").
    """

    def __init__(self, factor=0.5, max_restarts=10, monitor="loss"):
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not 0.0 < factor < 1.0:
            raise ValueError(f"Invalid value for argument factor={factor!r}: expected 0 < factor < 1.")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, numbers.Integral) or max_restarts < 0:
            raise ValueError(
                f"Invalid value for argument max_restarts={max_restarts!r}: expected an int >= 0."
            )
        self.factor = float(factor)
        self.max_restarts = int(max_restarts)
        self.monitor = monitor
        self.restarts = 0
        self.triggered = False
        self.restart_epoch = None
        self.events = []  # (epoch, new learning rate)
        self._epoch = 0
        self._snapshot = None

    @staticmethod
    def _finite(value):
        try:
            return bool(np.isfinite(float(keras.ops.convert_to_numpy(value))))
        except (TypeError, ValueError):
            return True

    def on_train_begin(self, logs=None):
        self.triggered = False
        self.restart_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        optimizer_variables = list(self.model.optimizer.variables) if self.model.optimizer is not None else []
        self._snapshot = (
            [np.array(keras.ops.convert_to_numpy(v)) for v in self.model.variables],
            [np.array(keras.ops.convert_to_numpy(v)) for v in optimizer_variables],
        )

    def _trigger(self):
        if not self.triggered:
            self.triggered = True
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if logs and self.monitor in logs and not self._finite(logs[self.monitor]):
            self._trigger()

    def on_epoch_end(self, epoch, logs=None):
        if logs and self.monitor in logs and not self._finite(logs[self.monitor]):
            self._trigger()

    def on_train_end(self, logs=None):
        if not self.triggered:
            return
        if self.restarts >= self.max_restarts:
            raise NonFiniteLossError(
                f"NaNRestart: non-finite {self.monitor} in epoch {self._epoch + 1} after "
                f"{self.restarts} restart(s) (max_restarts={self.max_restarts}); giving up"
            )
        weights, optimizer_values = self._snapshot
        for variable, value in zip(self.model.variables, weights):
            variable.assign(value)
        if self.model.optimizer is not None:
            for variable, value in zip(self.model.optimizer.variables, optimizer_values):
                variable.assign(value)
            new_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)) * self.factor
            self.model.optimizer.learning_rate = new_rate
        else:  # pragma: no cover - fit needs an optimizer
            new_rate = None
        self.restarts += 1
        self.restart_epoch = self._epoch
        self.events.append((self._epoch, new_rate))


def fit_with_restarts(model, x=None, nan_callback=None, epochs=1, initial_epoch=0, callbacks=(), **kwargs):
    """``model.fit`` that restarts from the previous epoch with a smaller learning rate on NaN.

    ``nan_callback`` (a :class:`NaNRestart`, created when None) is put first among
    ``callbacks``. Returns the list of ``History`` objects, one per ``fit`` call.
    """
    nan_callback = nan_callback if nan_callback is not None else NaNRestart()
    histories = []
    epoch = initial_epoch
    while True:
        history = model.fit(
            x, epochs=epochs, initial_epoch=epoch, callbacks=[nan_callback, *callbacks], **kwargs
        )
        histories.append(history)
        if nan_callback.restart_epoch is None:
            return histories
        epoch = nan_callback.restart_epoch


__all__ += ["NaNRestart", "NonFiniteLossError", "fit_with_restarts"]
