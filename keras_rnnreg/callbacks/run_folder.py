"""The per-epoch commit of a run folder: ``keras.callbacks.ModelCheckpoint``, made atomic."""

import json
from pathlib import Path

import keras

from keras_rnnreg import _runfolder

__all__ = ["RunFolderCheckpoint"]


class RunFolderCheckpoint(keras.callbacks.ModelCheckpoint):
    """Every epoch: the model to ``checkpoints/epoch-NNNN.keras``, then the commit record.

    A ``ModelCheckpoint`` whose file is written beside its final name and moved into place
    (Keras' ``model.save`` writes in place: a kill would leave half a file); what the commit holds
    and guarantees: README, "What a run folder guarantees". Place it after ``early_stopping`` and
    every callback that adds to the logs; an epoch that ``nan_restart`` flagged is not committed.

    Args:
        run_dir: the run folder.
        state: the current commit record (a dict, updated in place at each commit).
        early_stopping: the run's ResumableEarlyStopping.
        nan_restart: the run's NaNRestart, or None.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_rnnreg import callbacks, layers
        >>> model = keras.Sequential([keras.Input((10, 3)), layers.SimpleRNN(8, name="rnn")])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> x, y = np.zeros((4, 10, 3), "float32"), np.zeros((4, 8), "float32")
        >>> import pathlib, shutil, tempfile
        >>> run_dir = pathlib.Path(tempfile.mkdtemp())
        >>> (run_dir / "checkpoints").mkdir()  # training.train makes the run folder's layout
        >>> stop = callbacks.ResumableEarlyStopping(monitor="loss")
        >>> state = {"history": []}
        >>> commit = callbacks.RunFolderCheckpoint(run_dir, state, stop)
        >>> _ = model.fit(x, y, epochs=2, verbose=0, callbacks=[stop, commit])
        >>> state["epoch"], state["last_checkpoint"], len(state["history"])
        (2, 'epoch-0002.keras', 2)
        >>> shutil.rmtree(run_dir)
    """

    def __init__(self, run_dir, state, early_stopping, nan_restart=None):
        self.run_dir = Path(run_dir)
        super().__init__(str(self.run_dir / _runfolder.CHECKPOINTS / _runfolder.EPOCH_FILE),
                         monitor=early_stopping.monitor, mode=early_stopping.mode)
        self.state, self.early_stopping, self.nan_restart = state, early_stopping, nan_restart

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_restart is not None and self.nan_restart.triggered:
            return
        row = {"epoch": epoch, **dict(sorted(_runfolder.scalars(logs).items()))}
        if self.monitor not in row:
            raise _runfolder.RunError(f"training.monitor={self.monitor!r} is not among the epoch "
                                      f"logs ({', '.join(sorted(row))})")
        stopper, done = self.early_stopping, epoch + 1
        path = Path(self.filepath.format(epoch=done))
        state = json.loads(json.dumps(self.state))  # the next state; self.state until the commit
        if stopper.best is not None and stopper.best_epoch == epoch:
            state.update(best=stopper.best, best_epoch=done, best_checkpoint=path.name)
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        state.update(epoch=done, wait=stopper.wait, last_checkpoint=path.name,
                     stopped_early=epoch > 0 and stopper.stopped_epoch == epoch,
                     history=[*state["history"], row], learning_rate=rate,
                     rng=_runfolder.rng_state(self.model))
        if self.nan_restart is not None:
            state["restarts"] = self.nan_restart.restarts
        _runfolder.save_model_atomic(self.model, path)
        _runfolder.fault_point("after_checkpoint", done)
        _runfolder.write_json_atomic(self.run_dir / _runfolder.STATE, state)  # the commit
        _runfolder.fault_point("after_commit", done)
        self.state.clear()
        self.state.update(state)
        _runfolder.tidy(self.run_dir, state)
