"""Fused GRU, weight-compatible with ``keras.layers.GRU``."""

from keras_rnnreg import _backend
from keras_rnnreg import activations as activations_lib
from keras_rnnreg._api import serializable
from keras_rnnreg.layers.base import FusedRNN, activation_config, inherited_arguments


class GRUArguments:
    """What the GRU layer and cell share: gates (z, r, h), σ, ``reset_after`` and the bias shape,
    (2, 3·units) with ``reset_after`` (input, recurrent), else (3·units,)."""

    _kind = "gru"
    _gates = 3

    def _set_gru_arguments(self, recurrent_activation, reset_after):
        self.recurrent_activation_name = recurrent_activation
        self.recurrent_activation = activations_lib.get(recurrent_activation,
                                                        "recurrent_activation")
        if not isinstance(reset_after, bool):
            raise ValueError(f"Invalid value for argument reset_after={reset_after!r}: expected "
                             "True or False.")
        self.reset_after = reset_after

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def get_config(self):
        return {**super().get_config(),
                "recurrent_activation": activation_config(self, "recurrent_activation"),
                "reset_after": self.reset_after}


@serializable
class GRU(GRUArguments, FusedRNN):
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
    ``perturbations=[...]`` (under ``reset_after=False`` a perturbed ``U_h`` acts on
    ``r ⊙ h_{t-1}``), ``state_regularizer=``, ``zoneout=z`` (h zoned after the GRU's own
    interpolation by z; :class:`~keras_rnnreg.layers.base.FusedRNN`). ``use_cudnn`` as
    :class:`keras_rnnreg.layers.LSTM`'s, plus ``reset_after=True``; Keras' JAX backend has no cuDNN
    GRU, so JAX runs our loop.
    """

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
            **inherited_arguments(locals(), "recurrent_activation", "reset_after"), **kwargs
        )
        self._set_gru_arguments(recurrent_activation, reset_after)
        self._check_use_cudnn()

    _cudnn_kernel = "gru"

    def _backward_activations(self):
        return (self.activation_name, self.recurrent_activation_name) if self.reset_after else None

    def _cudnn_equation_reasons(self):
        if not self.reset_after:
            yield "reset_after=False (cuDNN's GRU applies the reset gate after the matmul)"

    def _cudnn_run(self, x, states, kernel, recurrent_kernel, bias, mask):
        hidden, h = _backend.cudnn_gru(x, states[0], kernel, recurrent_kernel, bias, mask=mask)
        return hidden, h


__all__ = ["GRU", "GRUArguments"]
