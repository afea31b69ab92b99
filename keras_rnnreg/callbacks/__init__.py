"""Keras callbacks for regularized RNNs: diagnostics, the NaN policy, run folders, TensorBoard."""

from keras_rnnreg.callbacks.early_stopping import ResumableEarlyStopping
from keras_rnnreg.callbacks.hidden_norms import HiddenNormProbe, hidden_norms, hidden_sequences
from keras_rnnreg.callbacks.nan_restart import NaNRestart, NonFiniteLossError, fit_with_restarts
from keras_rnnreg.callbacks.run_folder import RunFolderCheckpoint
from keras_rnnreg.callbacks.spectral_radius import (
    SpectralRadiusLogger,
    recurrent_layers,
    spectral_radii,
)
from keras_rnnreg.callbacks.stop_on_signal import StopOnSignal
from keras_rnnreg.callbacks.tensorboard_scalars import TensorBoardScalars, tensorboard_available

__all__ = ["HiddenNormProbe", "NaNRestart", "NonFiniteLossError", "ResumableEarlyStopping",
           "RunFolderCheckpoint", "SpectralRadiusLogger", "StopOnSignal", "TensorBoardScalars",
           "fit_with_restarts", "hidden_norms", "hidden_sequences", "recurrent_layers",
           "spectral_radii", "tensorboard_available"]
