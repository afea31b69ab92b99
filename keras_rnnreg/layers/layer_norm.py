"""Layer-normalized LSTM and GRU (Ba, Kiros & Hinton 2016, "Layer Normalization", arXiv
1607.06450), as fused layers and as cells. Cited by section: no copy of the paper is at hand here
and equation numbers were not checked.

Layer normalization of a vector ``a`` of ``n`` entries with gain ``g`` and bias ``β``:
``LN(a; g, β) = g ⊙ (a − μ) / sqrt(σ² + ε) + β``, ``μ`` and ``σ²`` the mean and (biased)
variance of the entries of ``a``: one pair per example and timestep, shared by every unit of the
layer (Sec. 3; Sec. 3.1 for recurrent layers).

Everything the plain layers do happens here through the same machinery (``FusedRNN``): dropout,
perturbations drawn before the loop, zoneout masks, masks, ``stateful``, penalties on the state
sequence after the loop. Only the step differs: :func:`layer_norm_lstm_step` and
:func:`layer_norm_gru_step`, registered in ``_steps.RECURRENCES`` (one copy of each equation for
the layers and the cells; the step normalizes ``x_t W`` and then adds the bias, so the projection
before the loop is the bare matmul, plus the local reparameterization's noise: inside LN).
Gradients: autodiff through our loop. No hand-written backward was written (the plain layers' in
``layers/_steps.py`` has no normalization), so none was measured against autodiff; never cuDNN
(``cudnn_path`` says why).
"""

from keras import ops

from keras_rnnreg._api import serializable
from keras_rnnreg.layers import _steps
from keras_rnnreg.layers.cells import GRUCell, LSTMCell
from keras_rnnreg.layers.gru import GRU
from keras_rnnreg.layers.lstm import LSTM

_REASON = (
    "layer normalization of the input and recurrent projections{} at every step, which Keras' "
    "cuDNN kernels do not compute: our loop runs, with autodiff"
)


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


def _check_epsilon(layer, epsilon):
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0:
        raise ValueError(
            f"Invalid value for argument layer_norm_epsilon={epsilon!r} of "
            f"{type(layer).__name__}: expected a number > 0."
        )
    layer.layer_norm_epsilon = float(epsilon)


def _check_reset_after(layer, reset_after):
    if reset_after is not True:
        raise ValueError(
            f"Invalid value for argument reset_after={reset_after!r} of {type(layer).__name__}: "
            "expected True (the reset gate multiplies the normalized recurrent candidate "
            "projection; with reset_after=False that projection would read r ⊙ h and need a "
            "normalization of its own)."
        )


def _add_norm_weights(layer, cell):
    """The gains (ones) of the input and recurrent normalizations, and for the LSTM the gain
    (ones) and bias (zeros) of the cell's, after Keras' kernel, recurrent_kernel and bias."""
    width = layer._gates * layer.units
    layer.input_gamma = layer.add_weight(shape=(width,), name="input_gamma", initializer="ones")
    layer.recurrent_gamma = layer.add_weight(
        shape=(width,), name="recurrent_gamma", initializer="ones"
    )
    if cell:
        layer.cell_gamma = layer.add_weight(
            shape=(layer.units,), name="cell_gamma", initializer="ones"
        )
        layer.cell_beta = layer.add_weight(
            shape=(layer.units,), name="cell_beta", initializer="zeros"
        )


class _LayerNorm:
    """What the layers and cells share: the norm weights, their place in the step's config,
    ``layer_norm_epsilon``; the fused layers: never cuDNN, autodiff."""

    _keras_implementation_arg = False  # no Keras namesake: no legacy ``implementation``,
    _keras_use_cudnn_arg = False  # and no ``use_cudnn`` ("auto" / False accepted, True raises)
    _cudnn_kernel = None

    def _step_config(self):
        gains = [self.input_gamma, self.recurrent_gamma]
        if self._gates == 4:
            gains += [self.cell_gamma, self.cell_beta]
        return super()._step_config()._replace(params=(*gains, self.layer_norm_epsilon))

    @property
    def _no_cudnn_reason(self):
        return _REASON.format(" and of the cell" if self._gates == 4 else "")

    def _backward_activations(self):
        return None  # autodiff through our loop (module docstring)

    def get_config(self):
        return {**super().get_config(), "layer_norm_epsilon": self.layer_norm_epsilon}


class _LayerNormLayer(_LayerNorm):
    def build(self, sequences_shape, initial_state_shape=None):  # Keras passes them by name
        super().build(sequences_shape, initial_state_shape)
        _add_norm_weights(self, cell=self._gates == 4)


class _LayerNormCell(_LayerNorm):
    def build(self, input_shape):
        super().build(input_shape)
        _add_norm_weights(self, cell=self._gates == 4)


@serializable
class LayerNormLSTM(_LayerNormLayer, LSTM):
    """LSTM with layer normalization (Ba et al. 2016, Sec. 3.1 and the layer-normalized LSTM of
    its supplementary material): with ``σ = recurrent_activation``, ``g = activation``,

    * ``z = LN(x_t W; g_x) + LN(h_{t-1} U; g_h) + b``, split into blocks (i, f, c, o) as Keras;
    * ``c_t = σ(z_f) ⊙ c_{t-1} + σ(z_i) ⊙ g(z_c)`` (the carried cell is not normalized);
    * ``h_t = σ(z_o) ⊙ g_out(LN(c_t; g_c, β_c))``.

    Which variant and why: the paper's layer-normalized LSTM (its supplementary material:
    ``LN(W_h h_{t-1}; α1, β1) + LN(W_x x_t; α2, β2) + b`` and ``h_t = σ(o_t) ⊙
    tanh(LN(c_t; α3, β3))``), not its Sec. 3.1 plain-RNN form, which normalizes the sum ``W_hh
    h_{t-1} + W_xh x_t`` as one vector. The two projections are normalized separately because
    their scales differ and drift independently in training (one normalization of their sum would
    let the larger drown the smaller), each *as a whole*: one mean and variance over all
    4·units gate pre-activations of the example and step, as the paper writes ``LN(W_h
    h_{t-1})`` (not per gate, as some implementations do). The cell is normalized on its way to
    the output, not in the carry, so the memory is carried as in the plain LSTM. The paper's
    biases β1, β2 and b add up to one bias: it is Keras' ``bias`` (with ``unit_forget_bias``),
    not two more vectors of the same function.

    Weights: Keras' ``kernel`` (F, 4·units), ``recurrent_kernel`` (units, 4·units), ``bias``
    (4·units,), gate order i, f, c, o; then ``input_gamma`` (4·units,), ``recurrent_gamma``
    (4·units,), ``cell_gamma`` (units,) (initialized to ones) and ``cell_beta`` (units,)
    (zeros). Arguments: :class:`~keras_rnnreg.layers.LSTM`'s, and ``layer_norm_epsilon`` (ε,
    1e-3 as ``keras.layers.LayerNormalization``), keyword-only. ``perturbations`` act on W and
    U before the normalization (weight noise on a normalized projection: ``LN(x W̃)``; the local
    reparameterization's noise is added to ``x W`` inside LN), ``recurrent_dropout`` on the h
    that U reads, ``zoneout`` after the step (h from the un-zoned c̃_t, as the LSTM), masks,
    ``stateful``, ``state_regularizer`` (``on="cell"``: the carried, un-normalized cells),
    ``return_cell_sequence`` (idem) as the LSTM.

    Speed: autodiff through our loop, never cuDNN (``cudnn_path`` names layer normalization);
    the input projection and its normalization for all timesteps are computed before the loop.
    There is no ``use_cudnn`` argument (``True`` raises) and no ``implementation``.
    """

    _kind = "layer_norm_lstm"

    def __init__(self, units, *args, layer_norm_epsilon=1e-3, **kwargs):
        super().__init__(units, *args, **kwargs)
        _check_epsilon(self, layer_norm_epsilon)


@serializable
class LayerNormGRU(_LayerNormLayer, GRU):
    """GRU with layer normalization, our reading of Ba et al. 2016 (whose paper normalizes the
    LSTM; there is no GRU in it) in Keras' ``reset_after=True`` convention: with
    ``σ = recurrent_activation``, ``g = activation``,

    * ``p = LN(x_t W; g_x) + b_in``, ``a = LN(h_{t-1} U; g_h) + b_rec``, each split into (z, r, h);
    * ``z = σ(p_z + a_z)``, ``r = σ(p_r + a_r)``, ``h̃ = g(p_h + r ⊙ a_h)``;
    * ``h_t = z ⊙ h_{t-1} + (1 − z) ⊙ h̃``.

    Why: as the LSTM, the input and recurrent projections are normalized separately, each over
    its whole 3·units vector, which keeps the paper's ``LN(W_x x_t) + LN(W_h h_{t-1})``
    structure for the gates; the reset gate then multiplies the *normalized* recurrent candidate
    projection ``a_h`` (Keras' and cuDNN's reset-after GRU), so one normalization covers all
    three blocks of ``h_{t-1} U``. Under ``reset_after=False`` the candidate's projection would
    read ``r ⊙ h_{t-1}`` and need a normalization of its own: only ``reset_after=True`` is
    accepted. Keras' two bias rows are the two LN biases, ``b_in`` (row 0) and ``b_rec`` (row 1);
    they are not redundant here (``b_rec``'s candidate block is multiplied by r). The new h is
    not normalized (it is the carried state itself).

    Weights: Keras' ``kernel`` (F, 3·units), ``recurrent_kernel`` (units, 3·units), ``bias``
    (2, 3·units), gate order z, r, h; then ``input_gamma`` and ``recurrent_gamma`` (3·units,),
    initialized to ones. Arguments: :class:`~keras_rnnreg.layers.GRU`'s (``reset_after`` must be
    True) and ``layer_norm_epsilon`` (1e-3), keyword-only. Perturbations, dropout, zoneout, masks,
    ``stateful``, ``state_regularizer``: as :class:`LayerNormLSTM`. Autodiff through our loop,
    never cuDNN (``cudnn_path`` names layer normalization).
    """

    def __init__(self, units, *args, layer_norm_epsilon=1e-3, **kwargs):
        super().__init__(units, *args, **kwargs)
        _check_reset_after(self, self.reset_after)
        _check_epsilon(self, layer_norm_epsilon)

    _kind = "layer_norm_gru"


@serializable
class LayerNormLSTMCell(_LayerNormCell, LSTMCell):
    """The cell of :class:`LayerNormLSTM` (same equations, arguments and weights, step for step)
    for ``keras.layers.RNN`` and hand-written loops; as :class:`~keras_rnnreg.layers.LSTMCell`
    per-sequence perturbations only, no ``state_regularizer`` (``layers.cells``' docstring)."""

    _kind = "layer_norm_lstm"

    def __init__(self, units, *args, layer_norm_epsilon=1e-3, **kwargs):
        super().__init__(units, *args, **kwargs)
        _check_epsilon(self, layer_norm_epsilon)


@serializable
class LayerNormGRUCell(_LayerNormCell, GRUCell):
    """The cell of :class:`LayerNormGRU` (``reset_after=True`` only), as
    :class:`LayerNormLSTMCell` is :class:`LayerNormLSTM`'s."""

    _kind = "layer_norm_gru"

    def __init__(self, units, *args, layer_norm_epsilon=1e-3, **kwargs):
        super().__init__(units, *args, **kwargs)
        _check_reset_after(self, self.reset_after)
        _check_epsilon(self, layer_norm_epsilon)


__all__ = ["LayerNormGRU", "LayerNormGRUCell", "LayerNormLSTM", "LayerNormLSTMCell"]
