"""Callbacks shared by the tests of training runs."""

import keras


class StopAfterEpoch(keras.callbacks.Callback):
    """Raise ``KeyboardInterrupt`` at the end of an epoch (tests of interrupted runs)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt(f"stopped after epoch {self.epoch}")


class EpochsSeen(keras.callbacks.Callback):
    """The epochs that began (``self.epochs``)."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)
