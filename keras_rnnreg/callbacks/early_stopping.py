"""``keras.callbacks.EarlyStopping`` whose counter and best value outlive one ``fit`` call."""

import math

import keras

__all__ = ["ResumableEarlyStopping"]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' early stopping whose ``wait``, ``best`` and ``best_epoch`` carry over ``fit`` calls.

    They start from the arguments (a resumed run, or :func:`fit_with_restarts` calling ``fit``
    again) instead of afresh. Unlike Keras', a non-finite value is never an improvement, and an
    epoch that ``skip`` (a :class:`NaNRestart`) flagged is not counted: it will be trained again.

    Args:
        monitor: the log key to watch, as in ``keras.callbacks.EarlyStopping``.
        mode: ``"min"`` or ``"max"``, as in ``keras.callbacks.EarlyStopping``.
        patience: epochs without improvement before stopping; None never stops (the callback
            still tracks the best epoch).
        wait: epochs without improvement so far (e.g. from a run's commit record).
        best: the best value so far, or None.
        best_epoch: the 0-based epoch of ``best``.
        skip: a callback whose ``triggered`` attribute marks an epoch to leave out.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_rnnreg import callbacks, layers
        >>> model = keras.Sequential([keras.Input((10, 3)), layers.SimpleRNN(8, name="rnn")])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> x, y = np.zeros((4, 10, 3), "float32"), np.zeros((4, 8), "float32")
        >>> stop = callbacks.ResumableEarlyStopping(monitor="loss", patience=4, wait=2, best=0.0)
        >>> history = model.fit(x, y + 1.0, epochs=10, verbose=0, callbacks=[stop])
        >>> len(history.history["loss"]), stop.wait  # from wait=2, two epochs reach patience 4
        (2, 4)
    """

    def __init__(self, monitor="val_loss", mode="min", patience=None, wait=0, best=None,
                 best_epoch=0, skip=None):
        super().__init__(monitor=monitor, mode=mode,
                         patience=math.inf if patience is None else patience)
        self.skip = skip
        self._carried = (wait, best, best_epoch)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.wait, self.best, self.best_epoch = self._carried

    def on_epoch_end(self, epoch, logs=None):
        if self.skip is not None and self.skip.triggered:
            return
        super().on_epoch_end(epoch, logs)
        self._carried = (self.wait, self.best, self.best_epoch)

    def _is_improvement(self, monitor_value, reference_value):
        return math.isfinite(float(monitor_value)) and bool(
            super()._is_improvement(monitor_value, reference_value))
