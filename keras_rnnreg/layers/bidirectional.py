"""Bidirectional wrapper that runs both directions of our LSTM in one cuDNN call."""

import keras
from keras import ops

from keras_rnnreg import _backend
from keras_rnnreg._api import serializable
from keras_rnnreg.layers._cudnn import config_reason, cudnn_path
from keras_rnnreg.layers.gru import GRU
from keras_rnnreg.layers.lstm import LSTM


@serializable
class Bidirectional(keras.layers.Bidirectional):
    """``keras.layers.Bidirectional`` (same arguments, weights and outputs) that, around a
    :class:`keras_rnnreg.layers.LSTM` on the cuDNN path, runs both directions in *one*
    bidirectional cuDNN call, as Keras does for its own LSTM (the norm-stabilizer paper's TIMIT
    network, Sec. 2.2: three bidirectional layers of 500 units, after Graves et al. 2013).

    Each direction's perturbations are drawn once (forward first) and its ``state_regularizer``
    sees its own sequence in its processing order. A mask, initial states, ``return_state``,
    ``stateful``, input ``dropout`` in training, TensorFlow or no GPU run the two layers one after
    the other, as ``keras.layers.Bidirectional``; so does our :class:`~keras_rnnreg.layers.GRU`
    always (Keras' one-call GRU path would skip our perturbations).
    """

    def call(self, sequences, initial_state=None, mask=None, training=None):
        if self._can_attempt_fused_lstm(mask, initial_state, training=bool(training)):
            try:
                return self._call_fused_lstm(sequences, initial_state, training=bool(training))
            except NotImplementedError:
                pass
        return super().call(sequences, initial_state=initial_state, mask=mask, training=training)

    def _can_attempt_fused_lstm(self, mask, initial_state=None, training=None):
        """Keras' hook (3.15): whether the configuration allows the one-call path (the device is
        checked by :meth:`_call_fused_lstm`); ``training=None`` (Keras' call) judges training."""
        fwd, bwd = self.forward_layer, self.backward_layer
        if (mask is not None or initial_state is not None or self.stateful or self.return_state
                or not (isinstance(fwd, LSTM) and isinstance(bwd, LSTM)) or fwd.units != bwd.units
                or ((training or training is None) and (fwd.dropout or bwd.dropout))
                or not (fwd.built and bwd.built)):
            return False
        training = training is not False
        return config_reason(fwd, training) is None and config_reason(bwd, training) is None

    def _call_fused_lstm(self, sequences, initial_state, training=None):
        if training is None:
            # Keras' dispatch (no ``training``): our call() has tried this path already.
            raise NotImplementedError("the one-call path is taken from our call() only")
        for layer in (self.forward_layer, self.backward_layer):
            taken, reason = cudnn_path(layer, training)
            if not taken:
                raise NotImplementedError(reason)
        if _backend.keras_lstm_kernel("bidirectional_lstm") is None:
            raise NotImplementedError("no bidirectional_lstm kernel in this Keras backend")
        # Both directions in one bidirectional cuDNN call (the path Keras calls "fused").
        fwd, bwd = self.forward_layer, self.backward_layer
        x = ops.convert_to_tensor(sequences, dtype=fwd.compute_dtype)
        y, y_rev = _backend.cudnn_bidirectional_lstm(
            x, fwd._cudnn_weights(training), bwd._cudnn_weights(training)
        )
        # The backward layer's penalty on its sequence in its processing order (reversed time).
        for layer, seq in ((fwd, y), (bwd, ops.flip(y_rev, axis=1))):
            for reg in layer._state_regularizers:
                self.add_loss(reg.penalty(seq))
        if not self.return_sequences:
            y, y_rev = y[:, -1], y_rev[:, 0]
        y, y_rev = ops.cast(y, self.compute_dtype), ops.cast(y_rev, self.compute_dtype)
        merge = {"concat": lambda: ops.concatenate([y, y_rev], axis=-1), "sum": lambda: y + y_rev,
                 "ave": lambda: (y + y_rev) / 2, "mul": lambda: y * y_rev}
        return merge[self.merge_mode]() if self.merge_mode in merge else (y, y_rev)

    def _can_attempt_fused_gru(self, mask, initial_state=None):
        """Keras' hook (3.15), answered by configuration; :meth:`_call_fused_gru` then takes the
        two-call path."""
        fwd, bwd = self.forward_layer, self.backward_layer
        if (mask is not None or self.stateful
                or (initial_state is not None and len(initial_state) != 2)
                or not (isinstance(fwd, GRU) and isinstance(bwd, GRU)) or fwd.units != bwd.units
                or fwd.dropout or bwd.dropout):
            return False
        return config_reason(fwd, True) is None and config_reason(bwd, True) is None

    def _call_fused_gru(self, sequences, initial_state):
        raise NotImplementedError("our GRU runs its two directions as two calls")

    def compute_mask(self, _, mask):
        if not (self.return_state and self.states is not None):
            return super().compute_mask(_, mask)
        # keras.layers.Bidirectional 3.15 multiplies a generator here (TypeError) for a stateful
        # layer with return_state: the outputs' masks, then one None per state of either layer.
        if isinstance(mask, list):
            mask = mask[0]
        mask = mask if self.return_sequences else None
        outputs = (mask, mask) if self.merge_mode is None else (mask,)
        return (*outputs, *(None for _ in self.states))


__all__ = ["Bidirectional"]
