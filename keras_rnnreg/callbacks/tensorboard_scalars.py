"""Epoch logs as TensorBoard scalars, written with the ``tensorboard`` package (any backend).

The layout of ``keras.callbacks.TensorBoard``, which needs TensorFlow, through
``tensorboard.summary.Writer``, which does not. An optional extra: ``keras-rnnreg[tensorboard]``.
"""

from pathlib import Path

import keras

from keras_rnnreg import _runfolder

__all__ = ["TensorBoardScalars", "tensorboard_available"]


def tensorboard_available():
    """Whether the ``tensorboard`` package can be imported."""
    try:
        import tensorboard.summary  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardScalars(keras.callbacks.Callback):
    """Write every scalar of the epoch logs as a TensorBoard scalar.

    ``val_<name>`` goes to ``<log_dir>/validation`` as ``epoch_<name>``, the others to
    ``<log_dir>/train``, the epoch as the step. ``ImportError`` without ``tensorboard``.

    Args:
        log_dir: the folder of the event files.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_rnnreg import callbacks, layers
        >>> model = keras.Sequential([keras.Input((10, 3)), layers.SimpleRNN(8, name="rnn")])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> x, y = np.zeros((4, 10, 3), "float32"), np.zeros((4, 8), "float32")
        >>> import os, shutil, tempfile
        >>> log_dir = tempfile.mkdtemp()
        >>> _ = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0,
        ...               callbacks=[callbacks.TensorBoardScalars(log_dir)])
        >>> sorted(os.listdir(log_dir))
        ['train', 'validation']
        >>> shutil.rmtree(log_dir)
    """

    def __init__(self, log_dir):
        super().__init__()
        if not tensorboard_available():
            raise ImportError("TensorBoard logs need the `tensorboard` package, which is not "
                              "installed; install the extra: pip install "
                              "'keras-rnnreg[tensorboard]'")
        self.log_dir = Path(log_dir)
        self._writers = {}

    def _writer(self, kind):
        if kind not in self._writers:
            from tensorboard.summary import Writer

            self._writers[kind] = Writer(str(self.log_dir / kind))
        return self._writers[kind]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in _runfolder.scalars(logs).items():
            kind, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(kind).add_scalar(f"epoch_{name}", value, step=epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
