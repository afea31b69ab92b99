"""Hidden-state norms beyond the training horizon (norm-stabilizer paper, Sec. 2.4, Figs. 3-5)."""

import keras
import numpy as np

from keras_rnnreg._api import check_int
from keras_rnnreg.callbacks.spectral_radius import recurrent_kernel

__all__ = ["HiddenNormProbe", "hidden_norms", "hidden_sequences"]


def _find_layer(model_or_layer, layer_name):
    if isinstance(model_or_layer, keras.Model):
        model = model_or_layer
        if isinstance(layer_name, keras.layers.Layer):  # the layer itself (hidden_sequences)
            return model, layer_name
        if layer_name is None:
            found = [layer for layer in model.layers if recurrent_kernel(layer) is not None]
            if not found:
                raise ValueError(f"hidden_norms: model {model.name!r} has no recurrent layer at "
                                 "its top level; pass layer_name=.")
            return model, found[0]
        try:
            return model, model.get_layer(layer_name)
        except ValueError as err:
            raise ValueError(f"hidden_norms: no layer named layer_name={layer_name!r} in model "
                             f"{model.name!r}.") from err
    if isinstance(model_or_layer, keras.layers.Layer):
        return None, model_or_layer
    raise ValueError("hidden_norms expects a keras.Model or a recurrent layer; received "
                     f"{model_or_layer!r}.")


def _sequence_copy(layer, cells):
    """A fresh layer from ``layer``'s config returning the full hidden (and cell) sequence."""
    if isinstance(layer, keras.layers.Bidirectional):
        raise ValueError(f"hidden_norms: {layer.name!r} is Bidirectional; probe one direction, "
                         f"e.g. {layer.name}.forward_layer.")
    if recurrent_kernel(layer) is None and not hasattr(layer, "return_sequences"):
        raise ValueError(f"hidden_norms: layer {layer.name!r} is not a recurrent layer.")
    config = layer.get_config()
    config.update({"return_sequences": True, "return_state": False})
    off = {"stateful": False, "state_regularizer": None, "return_variance": False}
    config.update({key: value for key, value in off.items() if key in config})
    if cells:
        if "return_cell_sequence" not in config:
            raise ValueError("hidden_norms(cells=True) needs a layer with return_cell_sequence "
                             f"(keras_rnnreg.layers.LSTM); {layer.name!r} is a "
                             f"{type(layer).__name__}.")
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
        self.layer, self.cells, self.copy = layer, cells, _sequence_copy(layer, cells)
        self.model = self.source = self.clone = None
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
            raise ValueError(f"hidden_norms: cannot locate the input of layer {layer.name!r} in "
                             f"model {model.name!r} (a model built without keras.Input, or a "
                             "shared layer); pass the layer itself and its input "
                             "sequences.") from err
        if isinstance(symbolic_input, (list, tuple)):
            # [sequences, mask or initial states...] when the layer got more than one tensor; the
            # sequences carry their Keras mask, which the copy picks up when called on them.
            symbolic_input = symbolic_input[0]
        return symbolic_input

    def _clone_with_free_length(self, model):
        if len(model.inputs) != 1:
            raise ValueError(f"hidden_norms: model {model.name!r} has several inputs with a fixed "
                             "time dimension; build it with keras.Input((None, features)) or probe "
                             "the layer itself.")
        spec = model.inputs[0]
        free = keras.Input(batch_shape=(None, None, *spec.shape[2:]), dtype=spec.dtype)
        self.source = model
        self.clone = keras.models.clone_model(model, input_tensors=free)
        return self.clone

    def sync(self):
        if self.clone is not None:
            self.clone.set_weights(self.source.get_weights())
        if self.copy.built:
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


def _chunks(probe, inputs, batch_size, mask=None):
    """``(mask, [h] or [h, c])`` of ``probe`` over ``batch_size`` sequences at a time, float64."""
    step = int(inputs.shape[0]) if batch_size is None else int(batch_size)
    for start in range(0, int(inputs.shape[0]), step):
        part = None if mask is None else mask[start : start + step]
        outs = probe(inputs[start : start + step], mask=None if part is None else part > 0)
        yield part, [np.asarray(keras.ops.convert_to_numpy(o), np.float64)
                     for o in outs[: 2 if probe.cells else 1]]


def _norms(probe, inputs, mask=None, batch_size=None):
    inputs = np.asarray(inputs) if not hasattr(inputs, "shape") else inputs
    mask = None if mask is None else np.asarray(keras.ops.convert_to_numpy(mask), np.float64)
    totals = counts = 0.0
    for part, outs in _chunks(probe, inputs, batch_size, mask):
        norms = np.linalg.norm(np.stack(outs), axis=-1)  # (h or h and c, batch, time)
        weights = np.ones_like(norms[0]) if part is None else part
        totals, counts = totals + (norms * weights).sum(1), counts + weights.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = totals / counts
    return (means[0], means[1]) if probe.cells else means[0]


def hidden_norms(model_or_layer, inputs, layer_name=None, cells=False, mask=None, batch_size=None):
    """Batch-averaged ‖h_t‖₂ per timestep of a recurrent layer (norm-stabilizer paper, Figs. 3–5).

    A copy of the layer (from its config, returning sequences, without ``state_regularizer``)
    runs with the layer's weights in inference mode (no dropout or weight noise) over ``inputs``,
    which may be longer than the training sequences.

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


def hidden_sequences(model_or_layer, inputs, layer_name=None, cells=False, batch_size=None):
    """The hidden (and, with ``cells=True``, cell) sequences behind :func:`hidden_norms`.

    Same arguments (``layer_name`` may also be the layer object); returns float64 arrays
    (batch, time, units): ``h``, or ``(h, c)`` with ``cells=True``.
    """
    model, layer = _find_layer(model_or_layer, layer_name)
    chunks = [outs for _, outs in _chunks(_Probe(model, layer, cells), inputs, batch_size)]
    hidden, *cell = [np.concatenate(parts) for parts in zip(*chunks)]
    return (hidden, *cell) if cells else hidden


class HiddenNormProbe(keras.callbacks.Callback):
    """Log hidden-state norms beyond the training horizon at epoch ends (norm-stabilizer, Sec. 2.4).

    After every ``every``-th epoch, runs :func:`hidden_norms` on ``inputs`` and logs the mean
    ‖h_t‖₂ at the last timestep (``"hidden_norm/<layer>/last"``) and at t = ``training_length``
    (``".../at_training_length"``), with ``cells=True`` also ``"cell_norm/<layer>/..."``. The
    whole curves are kept in ``self.history``: ``{epoch: norms}`` (``(hidden, cell)`` with cells).

    Args:
        inputs: probe sequences for the model's input, typically longer than the training ones.
        layer_name: the recurrent layer of the model to probe.
        every: probe every this many epochs.
        training_length: the training sequence length; default: the time dimension of the model
            input (an error at the start of training if that is not fixed).
        cells: also probe the LSTM memory cells.
        mask: optional (batch, time) mask for the batch average.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_rnnreg import callbacks, layers
        >>> model = keras.Sequential([keras.Input((10, 3)), layers.SimpleRNN(8, name="rnn")])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> x, y = np.zeros((4, 10, 3), "float32"), np.zeros((4, 8), "float32")
        >>> probe = callbacks.HiddenNormProbe(np.ones((2, 30, 3), "float32"), "rnn")
        >>> history = model.fit(x, y, epochs=1, verbose=0, callbacks=[probe])
        >>> probe.history[0].shape  # the mean norm at each of the 30 probe steps
        (30,)
        >>> sorted(k for k in history.history if k.startswith("hidden_norm"))
        ['hidden_norm/rnn/at_training_length', 'hidden_norm/rnn/last']
    """

    def __init__(self, inputs, layer_name, every=1, training_length=None, cells=False, mask=None):
        super().__init__()
        self.every = check_int("every", every)
        if training_length is not None:
            training_length = check_int("training_length", training_length)
        self.inputs, self.layer_name, self.mask = inputs, layer_name, mask
        self.training_length, self.cells = training_length, bool(cells)
        self.history, self._probe = {}, None

    def on_train_begin(self, logs=None):
        model, layer = _find_layer(self.model, self.layer_name)
        self._probe = _Probe(model, layer, self.cells)
        if self.training_length is None:
            length = self.model.inputs[0].shape[1] if self.model.inputs else None
            if length is None:
                raise ValueError("HiddenNormProbe: the model's input has no fixed time dimension; "
                                 "pass training_length=.")
            self.training_length = int(length)
        if self.training_length > int(self.inputs.shape[1]):
            raise ValueError(f"HiddenNormProbe: training_length={self.training_length} is longer "
                             f"than the probe inputs ({self.inputs.shape[1]} timesteps).")

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        if self._probe is None:
            self.on_train_begin()
        self._probe.sync()
        result = _norms(self._probe, self.inputs, mask=self.mask)
        self.history[epoch] = result
        curves = zip(("hidden_norm", "cell_norm"), result if self.cells else (result,))
        if logs is not None:
            for prefix, curve in curves:
                key = f"{prefix}/{self.layer_name}"
                logs[f"{key}/last"] = float(curve[-1])
                logs[f"{key}/at_training_length"] = float(curve[self.training_length - 1])
