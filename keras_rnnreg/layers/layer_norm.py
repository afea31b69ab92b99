"""Layer-normalized LSTM and GRU (Ba, Kiros & Hinton 2016, "Layer Normalization", arXiv
1607.06450), as fused layers and as cells (cited by section; equation numbers not checked).

``LN(a; g, β) = g ⊙ (a − μ) / sqrt(σ² + ε) + β``, ``μ`` and ``σ²`` the mean and (biased) variance
of the entries of ``a``: one pair per example and timestep, shared by every unit (Sec. 3; 3.1).

Only the step differs from the plain layers (:func:`layer_norm_lstm_step`,
:func:`layer_norm_gru_step`, shared by layers and cells); it normalizes ``x_t W`` and then adds
the bias. Gradients: autodiff through our loop; never cuDNN.
"""

from keras import ops

from keras_rnnreg._api import check_positive, serializable
from keras_rnnreg.layers import _steps
from keras_rnnreg.layers.cells import GRUCell, LSTMCell
from keras_rnnreg.layers.gru import GRU
from keras_rnnreg.layers.lstm import LSTM


def _normalize(a, gain, epsilon, bias=None):
    """``gain ⊙ (a − μ) / sqrt(σ² + ε) (+ bias)`` over the last axis: ``keras.ops``' layer
    normalization (statistics in float32 under mixed precision; PyTorch's fused kernel)."""
    return ops.layer_normalization(a, gamma=gain, beta=bias, epsilon=epsilon)


def layer_norm_lstm_step(config, projected, h_in, u, carry, recurrent_bias=None, noise=None):
    """:class:`LayerNormLSTM`'s step; ``projected = x_t W`` (no bias), ``recurrent_bias`` the
    whole bias, ``config.params = (g_x, g_h, g_c, β_c, ε)``."""
    g_x, g_h, g_c, b_c, eps = config.params
    z = _normalize(projected, g_x, eps) + _normalize(_steps._recurrent(h_in, u, noise), g_h, eps)
    if recurrent_bias is not None:
        z = z + recurrent_bias
    zi, zf, zc, zo = ops.split(z, 4, axis=-1)
    sigma = config.recurrent_activation
    c = sigma(zf) * carry[1] + sigma(zi) * config.activation(zc)
    n = _normalize(c, g_c, eps, b_c)
    out = n if config.output_activation is None else config.output_activation(n)
    return [sigma(zo) * out, c], ()


def layer_norm_gru_step(config, projected, h_in, u, carry, recurrent_bias=None, noise=None):
    """:class:`LayerNormGRU`'s step; ``projected = x_t W`` (no bias), ``recurrent_bias`` the
    whole (2, 3·units) bias, ``config.params = (g_x, g_h, ε)``."""
    g_x, g_h, eps = config.params
    p = _normalize(projected, g_x, eps)
    a = _normalize(_steps._recurrent(h_in, u, noise), g_h, eps)
    if recurrent_bias is not None:
        p, a = p + recurrent_bias[0], a + recurrent_bias[1]
    xz, xr, xh = ops.split(p, 3, axis=-1)
    az, ar, ah = ops.split(a, 3, axis=-1)
    sigma = config.recurrent_activation
    z, r = sigma(xz + az), sigma(xr + ar)
    return [z * carry[0] + (1.0 - z) * config.activation(xh + r * ah)], ()


def _bias_in_step(config, bias):
    return None, bias  # the step adds the bias after normalizing x W


_steps.RECURRENCES.update(
    layer_norm_lstm=_steps.Recurrence(layer_norm_lstm_step, _bias_in_step),
    layer_norm_gru=_steps.Recurrence(layer_norm_gru_step, _bias_in_step),
)


def _add_norm_weights(layer):
    """The gains of the input and recurrent normalizations (and the LSTM cell's gain and bias)."""
    width = layer._gates * layer.units
    names = [("input_gamma", width, "ones"), ("recurrent_gamma", width, "ones")]
    if layer._gates == 4:
        names += [("cell_gamma", layer.units, "ones"), ("cell_beta", layer.units, "zeros")]
    for name, size, initializer in names:
        setattr(layer, name, layer.add_weight(shape=(size,), name=name, initializer=initializer))


class _LayerNorm:
    """What the layers and cells share: ``layer_norm_epsilon``, the norm weights, never cuDNN."""

    _keras_implementation_arg = False  # no Keras namesake: no legacy ``implementation``,
    _keras_use_cudnn_arg = False  # and no ``use_cudnn`` ("auto" / False accepted, True raises)
    _cudnn_kernel = None

    def __init__(self, units, *args, layer_norm_epsilon=1e-3, **kwargs):
        super().__init__(units, *args, **kwargs)
        if self._gates == 3 and self.reset_after is not True:
            raise ValueError(f"Invalid value for argument reset_after={self.reset_after!r} of "
                             f"{type(self).__name__}: expected True (the reset gate multiplies "
                             "the normalized recurrent candidate projection; with "
                             "reset_after=False that projection would read r ⊙ h and need a "
                             "normalization of its own).")
        self.layer_norm_epsilon = check_positive("layer_norm_epsilon", layer_norm_epsilon)

    def _step_config(self):
        gains = [self.input_gamma, self.recurrent_gamma]
        if self._gates == 4:
            gains += [self.cell_gamma, self.cell_beta]
        return super()._step_config()._replace(params=(*gains, self.layer_norm_epsilon))

    @property
    def _no_cudnn_reason(self):
        cell = " and of the cell" if self._gates == 4 else ""
        return (f"layer normalization of the input and recurrent projections{cell} at every step, "
                "which Keras' cuDNN kernels do not compute: our loop runs, with autodiff")

    def _backward_activations(self):
        return None  # autodiff through our loop (module docstring)

    def get_config(self):
        return {**super().get_config(), "layer_norm_epsilon": self.layer_norm_epsilon}


class _LayerNormLayer(_LayerNorm):
    def build(self, sequences_shape, initial_state_shape=None):  # Keras passes them by name
        super().build(sequences_shape, initial_state_shape)
        _add_norm_weights(self)


class _LayerNormCell(_LayerNorm):
    def build(self, input_shape):
        super().build(input_shape)
        _add_norm_weights(self)


@serializable
class LayerNormLSTM(_LayerNormLayer, LSTM):
    """LSTM with layer normalization (Ba et al. 2016, the layer-normalized LSTM of its
    supplementary material): with ``σ = recurrent_activation``, ``g = activation``,

    * ``z = LN(x_t W; g_x) + LN(h_{t-1} U; g_h) + b``, split into blocks (i, f, c, o) as Keras;
    * ``c_t = σ(z_f) ⊙ c_{t-1} + σ(z_i) ⊙ g(z_c)`` (the carried cell is not normalized);
    * ``h_t = σ(z_o) ⊙ g_out(LN(c_t; g_c, β_c))``.

    Reading: the supplementary material's ``LN(W_h h_{t-1}; α1, β1) + LN(W_x x_t; α2, β2) + b``,
    not Sec. 3.1's single normalization of the sum (whose larger term would drown the smaller);
    each projection normalized *as a whole* (one mean and variance over all 4·units gate
    pre-activations, not per gate); the cell normalized on its way to the output, not in the
    carry. β1, β2 and b add up to one bias: Keras' ``bias`` (with ``unit_forget_bias``).

    Weights: Keras' ``kernel``, ``recurrent_kernel``, ``bias`` (i, f, c, o); then ``input_gamma``,
    ``recurrent_gamma`` (4·units,), ``cell_gamma`` (units,), ones, and ``cell_beta``, zeros.
    Arguments: :class:`~keras_rnnreg.layers.LSTM`'s and ``layer_norm_epsilon`` (ε, 1e-3),
    keyword-only. Perturbations act on W and U before the normalization (``LN(x W̃)``);
    ``on="cell"`` penalties see the carried cells. Never cuDNN: no ``use_cudnn``, no
    ``implementation``.
    """

    _kind = "layer_norm_lstm"


@serializable
class LayerNormGRU(_LayerNormLayer, GRU):
    """GRU with layer normalization, our reading of Ba et al. 2016 (no GRU in the paper) in Keras'
    ``reset_after=True`` convention: with ``σ = recurrent_activation``, ``g = activation``,

    * ``p = LN(x_t W; g_x) + b_in``, ``a = LN(h_{t-1} U; g_h) + b_rec``, each split into (z, r, h);
    * ``z = σ(p_z + a_z)``, ``r = σ(p_r + a_r)``, ``h̃ = g(p_h + r ⊙ a_h)``;
    * ``h_t = z ⊙ h_{t-1} + (1 − z) ⊙ h̃``.

    As the LSTM, each projection is normalized as a whole; the reset gate multiplies the
    *normalized* recurrent candidate projection ``a_h`` (under ``reset_after=False``, not accepted,
    it would read ``r ⊙ h_{t-1}`` and need its own normalization). Keras' two bias rows are
    ``b_in`` and ``b_rec``. Weights: Keras' (gate order z, r, h), then ``input_gamma`` and
    ``recurrent_gamma`` (3·units,), ones. Arguments: :class:`~keras_rnnreg.layers.GRU`'s and
    ``layer_norm_epsilon`` (1e-3), keyword-only; the rest as :class:`LayerNormLSTM`.
    """

    _kind = "layer_norm_gru"


@serializable
class LayerNormLSTMCell(_LayerNormCell, LSTMCell):
    """The cell of :class:`LayerNormLSTM` (same equations, arguments and weights) for
    ``keras.layers.RNN``; restrictions as :class:`~keras_rnnreg.layers.LSTMCell`."""

    _kind = "layer_norm_lstm"


@serializable
class LayerNormGRUCell(_LayerNormCell, GRUCell):
    """The cell of :class:`LayerNormGRU` (``reset_after=True`` only), as
    :class:`LayerNormLSTMCell` is :class:`LayerNormLSTM`'s."""

    _kind = "layer_norm_gru"


__all__ = ["LayerNormGRU", "LayerNormGRUCell", "LayerNormLSTM", "LayerNormLSTMCell"]
