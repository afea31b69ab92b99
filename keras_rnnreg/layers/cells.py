"""Recurrent cells for ``keras.layers.RNN``, ``keras.layers.StackedRNNCells`` and custom loops.

``SimpleRNNCell``, ``LSTMCell`` and ``GRUCell`` have Keras' cell API and weights and compute one
step with *the same code* as our fused layers: with the same weights and no randomness
``keras.layers.RNN(LSTMCell(n))`` computes ``LSTM(n)``; the fused layers are faster.

Randomness is drawn before the loop, through the hook by which ``keras.layers.RNN`` prepares a
cell's dropout masks: one dropout mask per sequence, as Keras, and one draw of the kernels per call
for ``perturbations=[...]`` with ``per="sequence"``. In a hand-written loop, call
``reset_dropout_mask()`` between sequences. Per-timestep perturbations, ``zoneout=`` and
``state_regularizer=`` raise a ValueError (README, "Keras compatibility", on why).
"""

import keras
from keras import ops

from keras_rnnreg import _backend
from keras_rnnreg._api import serializable
from keras_rnnreg._backend import plain_tensor
from keras_rnnreg.layers import _steps
from keras_rnnreg.layers.base import (
    RecurrentWeights,
    _deserialize_list,
    set_weight_arguments,
    weight_config,
)
from keras_rnnreg.layers.gru import GRUArguments
from keras_rnnreg.layers.lstm import LSTMArguments
from keras_rnnreg.perturbations import kernels_for_step


class _Cell(RecurrentWeights, keras.layers.Layer, _backend.DropoutRNNCell):
    """Shared cell machinery; subclasses set ``_kind`` (their step), ``_gates``, the states."""

    _kind = None
    _n_states = 1
    _single_state = True  # Keras' SimpleRNNCell / GRUCell: state_size is an int

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 perturbations=None, state_regularizer=None, zoneout=None, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        set_weight_arguments(self, locals())
        if zoneout:
            raise ValueError(f"{name} takes no zoneout (its masks are drawn per timestep, a cell's "
                             "once per sequence): use the layers, e.g. "
                             "keras_rnnreg.layers.LSTM(n, zoneout=...).")
        if state_regularizer is not None:
            raise ValueError(f"{name} takes no state_regularizer (a cell never sees the state "
                             "sequence): put keras_rnnreg.regularizers.NormStabilizer on the RNN's "
                             "output sequence instead, or use the fused layers.")
        self.perturbations = _deserialize_list(perturbations, "perturbations")
        for p in self.perturbations:
            if p.per != "sequence":
                raise ValueError(f"{name}: perturbation {p!r} is drawn per timestep, which needs "
                                 "randomness inside keras.layers.RNN's loop: use "
                                 "per='sequence', or the fused layers.")
        self._perturbed = None

    @property
    def state_size(self):
        return self.units if self._single_state else [self.units] * self._n_states

    def get_initial_state(self, batch_size=None):
        sizes = [self.state_size] if self._single_state else self.state_size
        return [ops.zeros((batch_size, size), dtype=self.compute_dtype) for size in sizes]

    def build(self, input_shape):
        self._build_weights(input_shape[-1])

    def get_dropout_mask(self, step_input):
        """Keras' hook before the loop: the dropout mask, and here the perturbed kernels too."""
        self._perturbed_kernels()
        return super().get_dropout_mask(step_input)

    def reset_dropout_mask(self):
        super().reset_dropout_mask()
        self._perturbed = None

    def _perturbed_kernels(self):
        """(kernel, recurrent_kernel) with this call's per-sequence perturbations applied."""
        if self._perturbed is None and self.perturbations:
            self._perturbed = kernels_for_step(
                self.perturbations, plain_tensor(self.kernel), plain_tensor(self.recurrent_kernel),
                True, None, self.seed_generator,
            )[:2]
        return self._perturbed

    def call(self, inputs, states, training=False):
        nested = isinstance(states, (list, tuple))
        carry = list(states) if nested else [states]
        if training and self.perturbations:
            kernel, recurrent_kernel = self._perturbed_kernels()
        else:  # the clean weights (DropConnect(scale="inference"): the expected ones)
            kernel, recurrent_kernel = kernels_for_step(
                self.perturbations, self.kernel, self.recurrent_kernel, False, None, None
            )[:2]
        if training and self.dropout > 0:
            inputs = inputs * self.get_dropout_mask(inputs)
        h_in = carry[0]
        if training and self.recurrent_dropout > 0:
            h_in = h_in * self.get_recurrent_dropout_mask(h_in)
        projected = ops.matmul(inputs, kernel)
        recurrence, config = _steps.RECURRENCES[self._kind], self._step_config()
        input_bias, recurrent_bias = recurrence.split_bias(config, self.bias)
        if input_bias is not None:
            projected = projected + input_bias
        new, _ = recurrence.step(config, projected, h_in, recurrent_kernel, carry, recurrent_bias)
        if self._single_state and not nested:
            return new[0], new[0]
        return new[0], new

    def get_config(self):
        return {**super().get_config(), **weight_config(self)}


@serializable
class SimpleRNNCell(_Cell):
    """The cell of :class:`keras_rnnreg.layers.SimpleRNN` (``h_t = f(x_t W + h_{t-1} U + b)``),
    a drop-in for ``keras.layers.SimpleRNNCell`` with ``perturbations=`` (per sequence) and
    ``"trec"``. Randomness and restrictions: module docstring."""

    _kind = "simple_rnn"


@serializable
class LSTMCell(LSTMArguments, _Cell):
    """The cell of :class:`keras_rnnreg.layers.LSTM` (gates i, f, c, o; ``output_activation``;
    ``unit_forget_bias``), a drop-in for ``keras.layers.LSTMCell`` with ``perturbations=`` (per
    sequence). Randomness and restrictions: module docstring."""

    _n_states = 2
    _single_state = False

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 output_activation="same", unit_forget_bias=True, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self._set_lstm_arguments(recurrent_activation, output_activation, unit_forget_bias)


@serializable
class GRUCell(GRUArguments, _Cell):
    """The cell of :class:`keras_rnnreg.layers.GRU` (gates z, r, h; ``reset_after`` as Keras), a
    drop-in for ``keras.layers.GRUCell`` with ``perturbations=`` (per sequence). Randomness and
    restrictions: module docstring."""

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 reset_after=True, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self._set_gru_arguments(recurrent_activation, reset_after)


__all__ = ["GRUCell", "LSTMCell", "SimpleRNNCell"]
