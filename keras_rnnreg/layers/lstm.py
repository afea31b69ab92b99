"""Fused LSTM, weight-compatible with ``keras.layers.LSTM``."""

import keras
from keras import ops

from keras_rnnreg import _backend
from keras_rnnreg import activations as activations_lib
from keras_rnnreg._api import serializable
from keras_rnnreg.layers.base import FusedRNN, activation_config, inherited_arguments


class LSTMArguments:
    """What the LSTM layer and cell share: gates (i, f, c, o); σ, g_out (``"same"``: the
    activation; None: none) and ``unit_forget_bias`` (Keras': ones for the forget gate's bias)."""

    _kind = "lstm"
    _gates = 4

    def _set_lstm_arguments(self, recurrent_activation, output_activation, unit_forget_bias):
        self.recurrent_activation_name = recurrent_activation
        self.recurrent_activation = activations_lib.get(recurrent_activation,
                                                        "recurrent_activation")
        self.output_activation_name = output_activation
        self.output_activation = (
            self.activation if output_activation == "same" else None if output_activation is None
            else activations_lib.get(output_activation, "output_activation"))
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_initializer_value(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base, units = self.bias_initializer, self.units

        def initializer(shape, dtype=None):
            ones = keras.initializers.get("ones")((units,), dtype=dtype)
            return ops.concatenate([base((units,), dtype=dtype), ones,
                                    base((units * 2,), dtype=dtype)])

        return initializer

    def get_config(self):
        return {**super().get_config(),
                "recurrent_activation": activation_config(self, "recurrent_activation"),
                "output_activation": activation_config(self, "output_activation"),
                "unit_forget_bias": self.unit_forget_bias}


@serializable
class LSTM(LSTMArguments, FusedRNN):
    """Long short-term memory with the gate order and weight layout of ``keras.layers.LSTM``.

    ``z = x_t W + h_{t-1} U + b`` split into blocks (i, f, c, o);
    ``c_t = σ(z_f) c_{t-1} + σ(z_i) g(z_c)``, ``h_t = σ(z_o) g_out(c_t)`` with ``g = activation``
    and ``σ = recurrent_activation`` (Hochreiter & Schmidhuber 1997, with forget gate; no
    peepholes).

    Beyond Keras:

    * ``output_activation``: ``"same"`` (default, Keras' behaviour: ``g_out = activation``) or
      ``None`` to remove the output tanh, ``h_t = σ(z_o) c_t``, as the norm-stabilizer paper does
      when it penalizes hidden states (Sec. 2.1, after Gers & Schmidhuber 2000);
    * ``return_cell_sequence=True`` also returns the memory-cell sequence (B, T, units), right
      after the main output, for probes and penalties on the cells;
    * ``state_regularizer`` with ``on="cell"`` penalizes the memory cells (one penalty or a list,
      each with its own ``on``);
    * ``perturbations``, masks, ``stateful`` and speed as :class:`keras_rnnreg.layers.SimpleRNN`;
    * ``zoneout=z`` or ``(cell_rate, hidden_rate)``: Krueger et al. 2016, read as
      :class:`~keras_rnnreg.layers.base.FusedRNN` says;
    * ``use_cudnn="auto" | True | False`` (Keras' argument): Keras' own cuDNN kernel where the
      configuration allows, per-sequence perturbations included (drawn once: AWD-LSTM's
      weight-dropped LSTM); :func:`keras_rnnreg.layers.cudnn_path` says which path and why, and
      ``use_cudnn=True`` raises a ValueError naming the reason where it cannot run.
    """

    _defers_cudnn_check = True
    _sequences_available = ("hidden", "cell")

    def __init__(
        self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
        kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
        bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
        recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
        kernel_constraint=None, recurrent_constraint=None, bias_constraint=None, dropout=0.0,
        recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
        go_backwards=False, stateful=False, unroll=False, use_cudnn="auto", *,
        output_activation="same", return_cell_sequence=False, **kwargs,
    ):
        # keras.layers.LSTM's arguments in its order; ours (and FusedRNN's, through **kwargs)
        # keyword-only after them.
        super().__init__(**inherited_arguments(
            locals(), "recurrent_activation", "unit_forget_bias", "output_activation",
            "return_cell_sequence"), **kwargs)
        self._set_lstm_arguments(recurrent_activation, output_activation, unit_forget_bias)
        self.return_cell_sequence = bool(return_cell_sequence)
        self._check_use_cudnn()

    def _extra_sequence_outputs(self):
        return ("cell",) if self.return_cell_sequence else ()

    _cudnn_kernel = "lstm"

    def _cudnn_equation_reasons(self):
        if self._output_activation_key() != "tanh":
            yield (f"output_activation={self.output_activation_name!r} (cuDNN always applies "
                   "tanh to the cell)")

    def _cudnn_output_reasons(self):
        if any(reg.on == "cell" for reg in self._state_regularizers):
            yield "state_regularizer on='cell' (cuDNN returns no cell sequence)"
        if self.return_cell_sequence:
            yield "return_cell_sequence=True (cuDNN returns no cell sequence)"

    def _cudnn_run(self, x, states, kernel, recurrent_kernel, bias, mask):
        """(hidden sequence (B, T, units), h, c) from Keras' cuDNN LSTM kernel."""
        hidden, h, c = _backend.cudnn_lstm(
            x, states[0], states[1], kernel, recurrent_kernel, bias, mask=mask
        )
        # None where the kernel cannot give it under a mask: then never read (no return_state)
        return hidden, h, ops.zeros_like(h) if c is None else c

    def _output_activation_key(self):
        same = self.output_activation_name == "same"
        return self.activation_name if same else self.output_activation_name

    def _backward_activations(self):
        names = (self.activation_name, self.recurrent_activation_name)
        return names + (self._output_activation_key(),)

    def get_config(self):
        return {**super().get_config(), "return_cell_sequence": self.return_cell_sequence}


__all__ = ["LSTM", "LSTMArguments"]
