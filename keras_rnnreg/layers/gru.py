"""Fused GRU, weight-compatible with ``keras.layers.GRU``."""

from keras_rnnreg import _backend
from keras_rnnreg import activations as activations_lib
from keras_rnnreg._api import serializable
from keras_rnnreg.layers.base import FusedRNN, activation_config


def set_gru_arguments(owner, recurrent_activation, reset_after):
    """The GRU's own arguments, on a layer or a cell: σ and ``reset_after``."""
    owner.recurrent_activation_name = recurrent_activation
    owner.recurrent_activation = activations_lib.get(recurrent_activation, "recurrent_activation")
    if not isinstance(reset_after, bool):
        raise ValueError(f"Invalid value for argument reset_after={reset_after!r}: expected True "
                         "or False.")
    owner.reset_after = reset_after


def gru_config(owner):
    return {"recurrent_activation": activation_config(owner, "recurrent_activation"),
            "reset_after": owner.reset_after}


def gru_bias_shape(owner):
    """The bias of a GRU layer or cell: (2, 3·units) with ``reset_after`` (input, recurrent),
    else (3·units,)."""
    return (2, 3 * owner.units) if owner.reset_after else (3 * owner.units,)


@serializable
class GRU(FusedRNN):
    """Gated recurrent unit with the gate order, conventions and weight layout of
    ``keras.layers.GRU`` (Cho et al. 2014; Keras' ``reset_after`` variants).

    With ``x_t W + b_in`` split into blocks (z, r, h) and ``σ = recurrent_activation``,
    ``g = activation``:

    * ``reset_after=True`` (Keras' default, cuDNN's convention): ``a = h_{t-1} U + b_rec``,
      ``z = σ(x W_z + b_z + a_z)``, ``r = σ(x W_r + b_r + a_r)``,
      ``h̃ = g(x W_h + b_h + r ⊙ a_h)``; ``bias`` is (2, 3·units): row 0 the input bias, row 1 the
      recurrent bias;
    * ``reset_after=False`` (Cho et al.'s original): ``h̃ = g(x W_h + b_h + (r ⊙ h_{t-1}) U_h)``;
      ``bias`` is (3·units,);
    * ``h_t = z ⊙ h_{t-1} + (1 − z) ⊙ h̃``.

    ``kernel`` (F, 3·units), ``recurrent_kernel`` (units, 3·units): ``set_weights`` moves weights
    to and from ``keras.layers.GRU``. Beyond Keras, as :class:`keras_rnnreg.layers.SimpleRNN`:
    ``perturbations=[...]`` (weight noise / DropConnect on the input and recurrent kernels, drawn
    before the loop; under ``reset_after=False`` a perturbed ``U_h`` acts on ``r ⊙ h_{t-1}``),
    ``state_regularizer=`` (the norm-stabilizer, AR / TAR on the hidden sequence, or a list of
    them), masks, ``unroll``.
    ``use_cudnn="auto" | True | False``: Keras' own cuDNN GRU kernel on TensorFlow and PyTorch with
    a GPU (``reset_after=True``, tanh / sigmoid, per-sequence perturbations only, no
    ``recurrent_dropout``; :func:`keras_rnnreg.layers.cudnn_path` names the reason otherwise).
    Keras' JAX backend has no cuDNN GRU (its ``gru`` is a ``lax.scan``), so JAX runs our loop.

    On PyTorch, with ``reset_after=True`` and tanh / sigmoid / relu / linear gates, the backward
    pass is hand-written (``layers/_steps.py``, as the LSTM's); elsewhere autodiff runs through
    the loop (faster there: docs/benchmarks.md).

    ``zoneout=z`` (Krueger et al. 2016): each unit of h keeps its previous value with probability
    z in training, after the GRU's update; the expectation at inference (details in
    :class:`~keras_rnnreg.layers.base.FusedRNN`; never cuDNN).
    """

    _gates = 3
    _kind = "gru"
    _defers_cudnn_check = True

    def __init__(
        self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
        kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
        bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
        bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
        recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0,
        seed=None, return_sequences=False, return_state=False, go_backwards=False,
        stateful=False, unroll=False, reset_after=True, use_cudnn="auto", **kwargs,
    ):
        # keras.layers.GRU's arguments in its order; those of FusedRNN keyword-only (**kwargs).
        super().__init__(
            units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint, dropout=dropout, recurrent_dropout=recurrent_dropout,
            seed=seed, return_sequences=return_sequences, return_state=return_state,
            go_backwards=go_backwards, stateful=stateful, unroll=unroll, use_cudnn=use_cudnn,
            **kwargs,
        )
        set_gru_arguments(self, recurrent_activation, reset_after)
        self._check_use_cudnn()

    _bias_shape = gru_bias_shape
    _cudnn_kernel = "gru"

    def _backward_activations(self):
        return (self.activation_name, self.recurrent_activation_name) if self.reset_after else None

    def _cudnn_equation_reasons(self):
        if not self.reset_after:
            yield "reset_after=False (cuDNN's GRU applies the reset gate after the matmul)"

    def _cudnn_run(self, x, states, kernel, recurrent_kernel, bias, mask):
        hidden, h = _backend.cudnn_gru(x, states[0], kernel, recurrent_kernel, bias, mask=mask)
        return hidden, h

    def get_config(self):
        return {**super().get_config(), **gru_config(self)}


__all__ = ["GRU", "gru_bias_shape", "gru_config", "set_gru_arguments"]
