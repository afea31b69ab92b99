"""Bidirectional wrapper that runs both directions of our LSTM in one cuDNN call."""

import keras
from keras import ops

from keras_rnnreg import _backend
from keras_rnnreg._api import serializable
from keras_rnnreg.layers._cudnn import cudnn_path
from keras_rnnreg.layers.lstm import LSTM


@serializable
class Bidirectional(keras.layers.Bidirectional):
    """``keras.layers.Bidirectional`` (same arguments, weights and outputs) that, around a
    :class:`keras_rnnreg.layers.LSTM` on the cuDNN path, runs both directions in *one*
    bidirectional cuDNN call, as Keras does for its own LSTM: cuDNN then computes the two
    directions concurrently. This is the bidirectional LSTM of the norm-stabilizer paper's TIMIT
    experiments (Sec. 2.2: three layers of 500 units per direction, after Graves et al. 2013).

    Each direction's per-sequence perturbations are drawn once (forward layer first, as the
    two-call path draws them) and its ``state_regularizer`` penalizes its own hidden sequence in
    its own processing order. Anything else (a mask, initial states, ``return_state``, input
    ``dropout`` in training, which draws a different input mask per direction, TensorFlow, whose
    Keras backend has no bidirectional kernel, no GPU) runs the two layers one after the other,
    exactly as ``keras.layers.Bidirectional``.
    """

    def call(self, sequences, initial_state=None, mask=None, training=None):
        if initial_state is None and mask is None and self._fusable(training):
            try:
                return self._call_fused(sequences, training)
            except NotImplementedError:
                pass
        return super().call(sequences, initial_state=initial_state, mask=mask, training=training)

    def _fusable(self, training):
        fwd, bwd = self.forward_layer, self.backward_layer
        if not (isinstance(fwd, LSTM) and isinstance(bwd, LSTM)):
            return False
        if self.return_state or fwd.units != bwd.units:
            return False
        if training and (fwd.dropout or bwd.dropout):
            return False
        if _backend.keras_lstm_kernel("bidirectional_lstm") is None:
            return False
        return cudnn_path(fwd, bool(training))[0] and cudnn_path(bwd, bool(training))[0]

    def _call_fused(self, sequences, training):
        fwd, bwd = self.forward_layer, self.backward_layer
        x = ops.convert_to_tensor(sequences, dtype=fwd.compute_dtype)
        y, y_rev = _backend.cudnn_bidirectional_lstm(
            x, fwd._cudnn_weights(training), bwd._cudnn_weights(training)
        )
        # Penalties as the two-call path computes them: the backward layer's on its sequence in
        # its processing order (reversed time).
        for layer, seq in ((fwd, y), (bwd, ops.flip(y_rev, axis=1))):
            if layer.state_regularizer is not None:
                self.add_loss(layer.state_regularizer.penalty(seq))
        if not self.return_sequences:
            y, y_rev = y[:, -1], y_rev[:, 0]
        y = ops.cast(y, self.compute_dtype)
        y_rev = ops.cast(y_rev, self.compute_dtype)
        if self.merge_mode == "concat":
            return ops.concatenate([y, y_rev], axis=-1)
        if self.merge_mode == "sum":
            return y + y_rev
        if self.merge_mode == "ave":
            return (y + y_rev) / 2
        if self.merge_mode == "mul":
            return y * y_rev
        return (y, y_rev)
