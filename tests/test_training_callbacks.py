"""NaNRestart / fit_with_restarts (the norm-stabilizer paper's NaN policy), early stopping that
outlives a ``fit`` call."""

import keras
import numpy as np
import pytest

from keras_rnnreg.callbacks import NaNRestart, ResumableEarlyStopping, fit_with_restarts


class _Batches(keras.utils.PyDataset):
    """4 batches per epoch; batch 2 holds a NaN the ``bad_epoch + 1``-th time it is read, and only
    then (so the epoch passes when it is run again)."""

    def __init__(self, bad_epoch=1):
        super().__init__()
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(16, 3)).astype("float32")
        self.y = self.x @ np.array([[1.0], [-2.0], [0.5]], "float32")
        self.reads = 0
        self.bad_epoch = bad_epoch

    def __len__(self):
        return 4

    def __getitem__(self, i):
        x, y = self.x[4 * i : 4 * i + 4], self.y[4 * i : 4 * i + 4]
        if i == 2:
            if self.reads == self.bad_epoch:
                x = x * np.nan
            self.reads += 1
        return x, y


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.begun, self.ended, self.weights = [], [], {}

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.ended.append((epoch, float(logs["loss"])))
        self.weights[epoch] = [np.array(w) for w in self.model.get_weights()]


def _model(lr=0.05):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.5), loss="mse")
    return model


def test_nan_halves_the_learning_rate_and_restarts_from_the_previous_epoch():
    model = _model()
    data = _Batches(bad_epoch=1)
    nan = NaNRestart()
    epochs = _Epochs()
    histories = fit_with_restarts(
        model, data, nan, epochs=3, callbacks=[epochs], verbose=0, shuffle=False
    )
    assert len(histories) == 2
    assert nan.restarts == 1 and nan.events[0][0] == 1
    assert np.isclose(nan.events[0][1], 0.025)
    assert np.isclose(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)), 0.025)
    assert epochs.begun == [0, 1, 1, 2]  # epoch 2 (index 1) ran again
    finished = [e for e, loss in epochs.ended if np.isfinite(loss)]
    assert finished == [0, 1, 2]
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_restored_weights_are_those_of_the_previous_epoch():
    model = _model()
    data = _Batches(bad_epoch=1)
    nan = NaNRestart()
    epochs = _Epochs()
    model.fit(data, epochs=3, callbacks=[nan, epochs], verbose=0, shuffle=False)
    assert nan.restart_epoch == 1 and nan.triggered
    for restored, saved in zip(model.get_weights(), epochs.weights[0]):
        np.testing.assert_allclose(restored, saved)


def test_gives_up_after_max_restarts():
    model = _model()
    with pytest.raises(RuntimeError, match="giving up"):
        model.fit(
            _Batches(bad_epoch=0),
            epochs=2,
            callbacks=[NaNRestart(max_restarts=0)],
            verbose=0,
            shuffle=False,
        )


def test_no_nan_no_restart():
    model = _model()
    nan = NaNRestart()
    histories = fit_with_restarts(model, _Batches(bad_epoch=99), nan, epochs=2, verbose=0)
    assert len(histories) == 1 and nan.restarts == 0 and nan.restart_epoch is None


def test_argument_checks():
    with pytest.raises(ValueError, match="factor=1.5"):
        NaNRestart(factor=1.5)
    with pytest.raises(ValueError, match="max_restarts=-1"):
        NaNRestart(max_restarts=-1)


def test_on_restart_is_told_the_epoch_and_the_new_learning_rate_and_is_a_terminate_on_nan():
    model = _model()
    told = []
    nan = NaNRestart(factor=0.25)
    fit_with_restarts(
        model, _Batches(bad_epoch=1), nan, epochs=2, verbose=0, shuffle=False,
        on_restart=lambda epoch, lr: told.append((epoch, lr)),
    )
    assert len(told) == 1 and told[0][0] == 1 and np.isclose(told[0][1], 0.0125)
    assert isinstance(nan, keras.callbacks.TerminateOnNaN)


class _Logs(keras.callbacks.Callback):
    """Replaces the monitored value of each epoch with the next of ``values``."""

    def __init__(self, values):
        super().__init__()
        self.values = list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values.pop(0)


def _fit(model, stopper, values, initial_epoch=0, epochs=10):
    model.fit(
        _Batches(bad_epoch=99), epochs=epochs, initial_epoch=initial_epoch, verbose=0,
        callbacks=[_Logs(values), stopper],
    )


def test_resumable_early_stopping_carries_its_state_across_fit_calls():
    model = _model()
    # 1.0 best at epoch 1; 2.0 and 3.0 wait 1 and 2: stops after epoch 2 with patience 2 ...
    whole = ResumableEarlyStopping("val_loss", "min", patience=2)
    _fit(model, whole, [1.0, 2.0, 3.0, 4.0])
    assert model.stop_training and whole.stopped_epoch == 2 and whole.best_epoch == 0
    # ... and so when the same run goes on in a second fit (Keras' EarlyStopping starts over).
    split = ResumableEarlyStopping("val_loss", "min", patience=2)
    _fit(model, split, [1.0, 2.0], epochs=2)
    assert (split.wait, split.best, split.best_epoch) == (1, 1.0, 0)
    _fit(model, split, [3.0, 4.0], initial_epoch=2, epochs=10)
    assert split.stopped_epoch == 2
    # A new callback starting from a commit record's values does the same.
    resumed = ResumableEarlyStopping("val_loss", "min", patience=2, wait=1, best=1.0)
    _fit(model, resumed, [3.0, 4.0], initial_epoch=2)
    assert resumed.stopped_epoch == 2
    plain = keras.callbacks.EarlyStopping("val_loss", patience=2, mode="min")
    _fit(model, plain, [3.0, 4.0, 5.0, 6.0], initial_epoch=2)
    assert plain.stopped_epoch == 4  # Keras' own counts from scratch


def test_resumable_early_stopping_never_takes_a_non_finite_best_and_skips_flagged_epochs():
    model = _model()
    stopper = ResumableEarlyStopping("val_loss", "max", patience=None)
    _fit(model, stopper, [float("nan"), 2.0, float("inf"), 1.0], epochs=4)
    assert (stopper.best, stopper.best_epoch, stopper.wait) == (2.0, 1, 2)
    assert not model.stop_training  # patience None never stops

    class Flag:
        triggered = True

    skipped = ResumableEarlyStopping("val_loss", "min", patience=1, skip=Flag())
    _fit(model, skipped, [1.0, 2.0, 3.0], epochs=3)
    assert (skipped.best, skipped.wait, skipped.stopped_epoch) == (None, 0, 0)
