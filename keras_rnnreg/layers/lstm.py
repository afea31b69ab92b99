"""Fused LSTM, weight-compatible with ``keras.layers.LSTM``."""

import keras
from keras import ops

from keras_rnnreg import activations as activations_lib
from keras_rnnreg._api import serializable
from keras_rnnreg.layers import _fused
from keras_rnnreg.layers.base import FusedRNN, activation_config


@serializable
class LSTM(FusedRNN):
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
    * ``zoneout=z`` or ``(cell_rate, hidden_rate)`` (Krueger et al. 2016): c and h each keep
      their previous value with their own probability in training (h after the output gate,
      from the un-zoned candidate cell), the expectation at inference; details in
      :class:`~keras_rnnreg.layers.base.FusedRNN`. Runs our loop with autodiff (no cuDNN, no
      hand-written backward);
    * ``use_cudnn="auto" | True | False`` (Keras' argument): the same equations through Keras'
      own cuDNN kernel on TensorFlow and PyTorch with a GPU, with per-sequence weight noise or
      DropConnect drawn once and the perturbed kernels handed to cuDNN (AWD-LSTM's weight-dropped
      LSTM), and the norm-stabilizer on h computed from the returned sequence. Which
      configurations qualify: :func:`keras_rnnreg.layers.cudnn_path` and the README table;
      ``use_cudnn=True`` with one that does not raises a ValueError naming the reason.
    """

    _gates = 4
    _kind = "lstm"
    _defers_cudnn_check = True
    _sequences_available = ("hidden", "cell")

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_cudnn="auto",
        *,
        output_activation="same",
        return_cell_sequence=False,
        **kwargs,
    ):
        # keras.layers.LSTM's arguments in its order; ours (and zero_output_for_mask,
        # perturbations, state_regularizer through **kwargs) keyword-only after them.
        super().__init__(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            use_cudnn=use_cudnn,
            **kwargs,
        )
        self.recurrent_activation_name = recurrent_activation
        self.recurrent_activation = activations_lib.get(
            recurrent_activation, "recurrent_activation"
        )
        self.output_activation_name = output_activation
        if output_activation == "same":
            self.output_activation = self.activation
        elif output_activation is None:
            self.output_activation = None
        else:
            self.output_activation = activations_lib.get(output_activation, "output_activation")
        self.unit_forget_bias = bool(unit_forget_bias)
        self.return_cell_sequence = bool(return_cell_sequence)
        self._check_use_cudnn()

    @property
    def state_size(self):
        return [self.units, self.units]

    def _extra_sequence_outputs(self):
        return ("cell",) if self.return_cell_sequence else ()

    def _bias_initializer_value(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base = self.bias_initializer
        units = self.units

        def initializer(shape, dtype=None):
            return ops.concatenate(
                [
                    base((units,), dtype=dtype),
                    keras.initializers.get("ones")((units,), dtype=dtype),
                    base((units * 2,), dtype=dtype),
                ]
            )

        return initializer

    def _step(self, projected, recurrent, carry):
        _, c_prev = carry
        z = projected + recurrent
        zi, zf, zc, zo = ops.split(z, 4, axis=-1)
        i = self.recurrent_activation(zi)
        f = self.recurrent_activation(zf)
        c = f * c_prev + i * self.activation(zc)
        o = self.recurrent_activation(zo)
        h = o * c if self.output_activation is None else o * self.output_activation(c)
        return [h, c]

    def _cudnn_config_reason(self, training=True):
        if self.activation_name != "tanh":
            return f"activation={self.activation_name!r} (cuDNN computes tanh)"
        if self.recurrent_activation_name != "sigmoid":
            return (
                f"recurrent_activation={self.recurrent_activation_name!r} "
                "(cuDNN computes sigmoid gates)"
            )
        if self._output_activation_key() != "tanh":
            return (
                f"output_activation={self.output_activation_name!r} "
                "(cuDNN always applies tanh to the cell)"
            )
        if self.unroll:
            return f"unroll={self.unroll!r}"
        if self.recurrent_dropout:
            return (
                f"recurrent_dropout={self.recurrent_dropout} (a fresh mask inside the loop; "
                "DropConnect(per='sequence') regularizes the recurrent weights and keeps cuDNN)"
            )
        if training:
            per_step = [p for p in self.perturbations if p.per == "timestep"]
            if per_step:
                return (
                    f"per-timestep perturbation {per_step[0]!r} (a new weight draw every step; "
                    "per='sequence' keeps cuDNN)"
                )
        if any(reg.on == "cell" for reg in self._state_regularizers):
            return "state_regularizer on='cell' (cuDNN returns no cell sequence)"
        if self.return_cell_sequence:
            return "return_cell_sequence=True (cuDNN returns no cell sequence)"
        return None

    def _output_activation_key(self):
        if self.output_activation_name == "same":
            return self.activation_name
        return self.output_activation_name

    def _use_fused(self):
        return _fused.pays(self._kind) and all(
            _fused.fusable(name)
            for name in (
                self.activation_name,
                self.recurrent_activation_name,
                self._output_activation_key(),
            )
        )

    def _fused_states(self, projected, recurrent_kernel, states, float_mask, recurrent_bias=None):
        both = _fused.lstm(
            projected, recurrent_kernel, states[0], states[1], float_mask,
            activation=self.activation_name,
            recurrent_activation=self.recurrent_activation_name,
            output_activation=self._output_activation_key(),
            unroll=self.unroll,
        )
        return ops.split(both, 2, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            recurrent_activation=activation_config(self, "recurrent_activation"),
            output_activation=activation_config(self, "output_activation"),
            unit_forget_bias=self.unit_forget_bias,
            return_cell_sequence=self.return_cell_sequence,
        )
        return config


__all__ = ["LSTM"]
