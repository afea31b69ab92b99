"""Keras callbacks for regularized RNNs: diagnostics, the NaN policy, run folders, TensorBoard.

One module per callback, each built on Keras' own where one fits:

=========================  ================================================================
``spectral_radius``        :class:`SpectralRadiusLogger`: the spectral radius of every
                           recurrent kernel in the epoch logs (noise study, Figs. 5-7)
``hidden_norms``           :class:`HiddenNormProbe`, :func:`hidden_norms`: hidden-state norms
                           beyond the training horizon (norm-stabilizer paper, Sec. 2.4)
``nan_restart``            :class:`NaNRestart` (a ``TerminateOnNaN``) and
                           :func:`fit_with_restarts`: on NaN, halve the learning rate and
                           restart from the previous epoch (norm-stabilizer paper, Sec. 2.1)
``early_stopping``         :class:`ResumableEarlyStopping`: ``EarlyStopping`` across ``fit``
                           calls and resumed runs
``run_folder``             :class:`RunFolderCheckpoint`: ``ModelCheckpoint`` made atomic, with
                           the per-epoch commit of a run folder (:mod:`keras_rnnreg.training`)
``stop_on_signal``         :class:`StopOnSignal`: Ctrl-C stops at the next batch boundary
``tensorboard_scalars``    :class:`TensorBoardScalars`: epoch logs as TensorBoard scalars with
                           the ``tensorboard`` package (optional extra), on any backend
=========================  ================================================================
"""

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

__all__ = [
    "HiddenNormProbe",
    "NaNRestart",
    "NonFiniteLossError",
    "ResumableEarlyStopping",
    "RunFolderCheckpoint",
    "SpectralRadiusLogger",
    "StopOnSignal",
    "TensorBoardScalars",
    "fit_with_restarts",
    "hidden_norms",
    "hidden_sequences",
    "recurrent_layers",
    "spectral_radii",
    "tensorboard_available",
]
