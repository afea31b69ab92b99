"""Ctrl-C (or SIGTERM) that stops ``fit`` at the next batch boundary."""

import signal
import threading

import keras

__all__ = ["StopOnSignal"]


class StopOnSignal(keras.callbacks.Callback):
    """Inside ``with stopper:``, the first SIGINT or SIGTERM stops at the next batch boundary.

    The handler only sets a flag; ``KeyboardInterrupt`` is raised at the next batch, epoch or
    validation boundary (Keras' log handling has bare ``except:`` clauses that would swallow it).
    A second signal interrupts at once. Off the main thread the handlers are left alone.

    Args:
        log: called with one line when the first signal arrives.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_rnnreg import callbacks, layers
        >>> model = keras.Sequential([keras.Input((10, 3)), layers.SimpleRNN(8, name="rnn")])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> x, y = np.zeros((4, 10, 3), "float32"), np.zeros((4, 8), "float32")
        >>> import os, signal
        >>> with callbacks.StopOnSignal() as stopper:
        ...     os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C were pressed
        ...     try:
        ...         model.fit(x, y, epochs=5, verbose=0, callbacks=[stopper])
        ...     except KeyboardInterrupt:
        ...         print("stopped")
        SIGINT: stopping after this batch (again to stop at once)
        stopped
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log=print):
        super().__init__()
        self.log, self.requested, self._previous = log, False, {}

    def _check(self, *args, **kwargs):
        if self.requested:
            raise KeyboardInterrupt("interrupted")

    on_train_batch_end = on_test_batch_end = on_epoch_begin = on_epoch_end = _check

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        name = signal.Signals(signum).name
        self.log(f"{name}: stopping after this batch (again to stop at once)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
