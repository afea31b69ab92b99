"""The NaN policy of the norm-stabilizer paper, and the one ``fit`` loop that restarts on NaN.

Sec. 2.1: "When we encounter a NaN, we divide the learning rate by 2, and restart with the
previous epochs parameters." :func:`keras_rnnreg.training.train` uses the same loop.
"""

import numbers

import keras
import numpy as np

from keras_rnnreg._api import check_int

__all__ = ["NaNRestart", "NonFiniteLossError", "fit_with_restarts"]


class NonFiniteLossError(RuntimeError):
    """Raised by :class:`NaNRestart` when the loss is still not finite after ``max_restarts``.

    Examples:
        >>> from keras_rnnreg.callbacks import NonFiniteLossError
        >>> issubclass(NonFiniteLossError, RuntimeError)  # NaNRestart's example raises one
        True
    """


def _finite(value):
    try:
        return bool(np.isfinite(float(keras.ops.convert_to_numpy(value))))
    except (TypeError, ValueError):
        return True


def _variables(model):
    """The model's variables and its optimizer's: what a restart puts back."""
    return model.variables, model.optimizer.variables if model.optimizer else []


class NaNRestart(keras.callbacks.TerminateOnNaN):
    """Halve the learning rate and restart from the previous epoch's parameters on NaN.

    Keeps a copy of the weights and optimizer state at every epoch start. A batch (or epoch) loss
    that is not finite stops ``fit`` like ``TerminateOnNaN``; at the end of that ``fit`` (where
    restoring works on every backend) the copy is put back, the learning rate multiplied by
    ``factor`` and :attr:`restart_epoch` set, from which :func:`fit_with_restarts` goes on. After
    ``max_restarts`` restarts a further NaN raises :class:`NonFiniteLossError`. Place it *first*
    among the callbacks, so that later ones can check :attr:`triggered` (e.g. to skip a
    checkpoint).

    Args:
        factor: learning-rate multiplier on every restart (0 < factor < 1; the paper's 1/2).
        max_restarts: restarts allowed in all (≥ 0).
        monitor: the log key to check (default "loss").

    Examples:
        >>> import keras, numpy as np
        >>> from keras_rnnreg import callbacks, layers
        >>> model = keras.Sequential([keras.Input((10, 3)), layers.SimpleRNN(8, name="rnn")])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> x, y = np.zeros((4, 10, 3), "float32"), np.zeros((4, 8), "float32")
        >>> restart = callbacks.NaNRestart(factor=0.5, max_restarts=2)
        >>> try:  # targets of NaN: every epoch's loss is NaN
        ...     callbacks.fit_with_restarts(model, x, restart, y=y * np.nan, verbose=0)
        ... except callbacks.NonFiniteLossError as err:
        ...     print(err)
        NaNRestart: non-finite loss in epoch 1 after 2 restart(s) (max_restarts=2); giving up
        >>> [(epoch, round(rate, 4)) for epoch, rate in restart.events]  # halved each time
        [(0, 0.005), (0, 0.0025)]
    """

    def __init__(self, factor=0.5, max_restarts=10, monitor="loss"):
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not 0 < factor < 1:
            raise ValueError(f"Invalid value for argument factor={factor!r}: expected 0 < factor "
                             "< 1.")
        self.factor = float(factor)
        self.max_restarts = check_int("max_restarts", max_restarts, minimum=0)
        self.monitor, self.restarts, self.triggered, self.restart_epoch = monitor, 0, False, None
        self.events = []  # (epoch, new learning rate)
        self._epoch, self._snapshot = 0, None

    def on_train_begin(self, logs=None):
        self.triggered, self.restart_epoch = False, None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._snapshot = [[np.array(keras.ops.convert_to_numpy(v)) for v in variables]
                          for variables in _variables(self.model)]

    def on_batch_end(self, batch, logs=None):
        if logs and self.monitor in logs and not _finite(logs[self.monitor]):
            self.triggered = self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.on_batch_end(epoch, logs)

    def on_train_end(self, logs=None):
        if not self.triggered:
            return
        if self.restarts >= self.max_restarts:
            raise NonFiniteLossError(f"NaNRestart: non-finite {self.monitor} in epoch "
                                     f"{self._epoch + 1} after {self.restarts} restart(s) "
                                     f"(max_restarts={self.max_restarts}); giving up")
        for variables, values in zip(_variables(self.model), self._snapshot):
            for variable, value in zip(variables, values):
                variable.assign(value)
        optimizer = self.model.optimizer
        new_rate = None
        if optimizer is not None:
            new_rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate)) * self.factor
            optimizer.learning_rate = new_rate
        self.restarts += 1
        self.restart_epoch = self._epoch
        self.events.append((self._epoch, new_rate))


def fit_with_restarts(model, x=None, nan_callback=None, epochs=1, initial_epoch=0, callbacks=(),
                      on_restart=None, **kwargs):
    """``model.fit`` that restarts from the previous epoch with a smaller learning rate on NaN.

    ``nan_callback`` (a :class:`NaNRestart`, created when None) is put first among
    ``callbacks``; ``on_restart(epoch, learning_rate)`` is called before each restart (e.g. to
    log it). Other keyword arguments go to ``fit``. Returns the ``History`` of every ``fit``.
    """
    nan_callback = nan_callback if nan_callback is not None else NaNRestart()
    histories = []
    epoch = initial_epoch
    while True:
        histories.append(model.fit(x, epochs=epochs, initial_epoch=epoch,
                                   callbacks=[nan_callback, *callbacks], **kwargs))
        if nan_callback.restart_epoch is None:
            return histories
        epoch = nan_callback.restart_epoch
        if on_restart is not None:
            on_restart(epoch, nan_callback.events[-1][1])
