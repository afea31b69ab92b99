"""Penalties on the state sequence of a recurrent network: the norm-stabilizer and its alternatives.

Krueger & Memisevic, "Regularizing RNNs by Stabilizing Activations" (norm_stabilizer.txt), Sec. 1:

    β · (1/T) Σ_t (‖h_t‖₂ − ‖h_{t−1}‖₂)²

and the alternative costs of Sec. 2.1.1 / Table 3. How the passages are read here:

* **Which pairs.** The authors' code averages over the T−1 differences of the *output* states
  h_1 … h_T (the initial state is not part of the sequence), so the cost is a mean over the batch
  and over the T−1 consecutive pairs (h_{t−1}, h_t), t = 2 … T.
* **Masks.** ``mask`` is a (batch, time) tensor of 1 (valid) / 0 (padding), left- or
  right-padded. A pair counts only if *both* its steps are valid; per-step costs count valid steps;
  ``"first_last"`` uses the first and the last *valid* step of each sequence. The mean is pooled
  over everything that counts in the batch (Σ cost · weight / Σ weight), so each valid pair (or
  step, or sequence) weighs the same and an unmasked batch gives exactly the formula above. When
  nothing counts (e.g. T = 1) the penalty is 0.
* **Costs** (``cost=``), with Δ‖h_t‖ = ‖h_t‖ − ‖h_{t−1}‖:

  =================  ========================================  ===================================
  ``cost``           per-pair / per-step value                  paper
  =================  ========================================  ===================================
  "norm_diff"        (Δ‖h_t‖₂)²                                 the norm-stabilizer, Sec. 1
  "state_diff"       ‖h_t − h_{t−1}‖₂²                          Table 3, (Δh_t)²
  "relative"         (Δ‖h_t‖₂ / ‖h_t‖₂)²                        Table 3; denominator: the norm of
                                                                the *later* step h_t, as written
  "l1_norm_diff"     (Δ‖h_t‖₁)²                                 Table 3, (Δ‖h_t‖₁)²
  "target"           (‖h_t‖₂ − target)², every valid step       Table 3, (‖h‖₂ − 5)²
  "first_last"       (‖h_first‖₂ − ‖h_last‖₂)², per sequence    Table 3, (‖h_0‖₂ − ‖h_T‖₂)²
  "abs_norm_diff"    |Δ‖h_t‖₂|                                  text of 2.1.1 ("performed very
                                                                poorly")
  "squared_norm"     ‖h_t‖₂², every valid step                  text of 2.1.1 ("performed very
                                                                poorly")
  =================  ========================================  ===================================

  For "first_last", h_0 of the paper is read as the first state of the given sequence (the
  first output state, as for the pairs above), under masks the first valid one; the mean is over
  the sequences with at least one valid step.

* **Safe norms.** ‖h‖₂ is :func:`safe_l2_norm`, so an all-zero state (the initial state, or padded
  steps with ``zero_output_for_mask``) never produces a NaN gradient. The denominator of
  "relative" is max(‖h_t‖₂, 1e-6).

AR and TAR of AWD-LSTM (Merity et al. 2017, "Regularizing and Optimizing LSTM Language Models")
follow the same mask rules (:func:`activation_penalty`, :func:`temporal_activation_penalty`).
"""

import keras
from keras import ops

from keras_rnnreg._api import check_choice, check_real, serializable

COSTS = ("norm_diff", "state_diff", "relative", "l1_norm_diff", "target", "first_last",
         "abs_norm_diff", "squared_norm")
_PAIR_COSTS = ("norm_diff", "state_diff", "relative", "l1_norm_diff", "abs_norm_diff")
ON = ("hidden", "cell")
_RELATIVE_EPSILON = 1e-6


def safe_l2_norm(x, axis=-1):
    """‖x‖₂ = sqrt(Σx²) along ``axis``, exact, with gradient 0 at x = 0 instead of NaN (a
    "double-where" safe square root)."""
    squared = ops.sum(ops.square(x), axis=axis)
    positive = squared > 0
    # Tensors, not Python scalars, for the branches: on PyTorch a scalar becomes a fresh device
    # tensor (a host-to-device copy) every call.
    safe = ops.where(positive, squared, ops.ones_like(squared))
    return ops.where(positive, ops.sqrt(safe), ops.zeros_like(squared))


def _weighted_mean(values, weights):
    """Σ values·weights / Σ weights, and 0 when the weights sum to 0."""
    total = ops.sum(values * weights)
    count = ops.sum(weights)
    safe_count = ops.where(count > 0, count, ops.ones_like(count))
    return ops.where(count > 0, total / safe_count, ops.zeros_like(total))


def _prepare(sequence, mask, caller):
    """The sequence (float32 when float16/bfloat16), a float (batch, time) mask, their dtype."""
    sequence = ops.convert_to_tensor(sequence)
    if len(sequence.shape) != 3:
        raise ValueError(
            f"{caller} expects a sequence of rank 3 (batch, time, units); received shape "
            f"{tuple(sequence.shape)}."
        )
    dtype = keras.backend.standardize_dtype(sequence.dtype)
    if dtype in ("float16", "bfloat16") or not dtype.startswith("float"):
        dtype = "float32"
        sequence = ops.cast(sequence, dtype)
    if mask is None:
        mask = ops.ones(ops.shape(sequence)[:2], dtype=dtype)
    else:
        mask = ops.cast(mask, dtype)
        if len(mask.shape) != 2:
            raise ValueError(
                f"{caller} expects a mask of rank 2 (batch, time); received shape "
                f"{tuple(mask.shape)}."
            )
    return sequence, mask, dtype


def state_penalty(sequence, cost="norm_diff", mask=None, target=5.0):
    """The unscaled mean cost of a state sequence (see the module docstring for each ``cost``).

    Args:
        sequence: (batch, time, units) hidden states or memory cells.
        cost: one of :data:`COSTS`.
        mask: None, or (batch, time) with 1 for valid and 0 for padded steps (bool or float).
        target: the target norm of ``cost="target"`` (Table 3 uses 5).

    Returns:
        A scalar float tensor (float32 when the sequence is float16/bfloat16).
    """
    check_choice("cost", cost, COSTS)
    sequence, mask, dtype = _prepare(sequence, mask, "state_penalty")

    if cost == "state_diff":
        return _weighted_mean(*_squared_steps(sequence, mask))
    pairs = mask[:, 1:] * mask[:, :-1]
    l1 = cost == "l1_norm_diff"
    norms = ops.sum(ops.abs(sequence), axis=-1) if l1 else safe_l2_norm(sequence)  # (batch, time)
    if cost in _PAIR_COSTS:
        delta = norms[:, 1:] - norms[:, :-1]
        if cost == "relative":
            delta = delta / ops.maximum(norms[:, 1:], _RELATIVE_EPSILON)
        values = ops.abs(delta) if cost == "abs_norm_diff" else ops.square(delta)
        return _weighted_mean(values, pairs)

    if cost == "target":
        return _weighted_mean(ops.square(norms - ops.cast(target, dtype)), mask)
    if cost == "squared_norm":
        return _weighted_mean(ops.sum(ops.square(sequence), axis=-1), mask)

    # first_last: one-hot of the first / last valid step of each sequence via cumulative counts.
    counts = ops.cumsum(mask, axis=1)
    totals = counts[:, -1:]
    first_norm = ops.sum(norms * mask * ops.cast(ops.equal(counts, 1.0), dtype), axis=1)
    last_norm = ops.sum(norms * mask * ops.cast(ops.equal(counts, totals), dtype), axis=1)
    has_steps = ops.cast(totals[:, 0] > 0, dtype)
    return _weighted_mean(ops.square(first_norm - last_norm), has_steps)


class _SequencePenalty(keras.layers.Layer):
    """A weight-scaled penalty on a state sequence, in the two uses :class:`NormStabilizer`
    describes."""

    _weight_name = None  # the constructor argument holding the weight

    def __init__(self, scale, on="hidden", **kwargs):
        super().__init__(**kwargs)
        self._scale = check_real(self._weight_name, scale, minimum=0.0)
        self.on = check_choice("on", on, ON)
        self.supports_masking = True
        # No weights: built from the start. As a layer's never-called state_regularizer= sublayer,
        # unbuilt, it made every fit() / predict() rebuild the model (measured 1.3-2x on PyTorch).
        self.built = True

    def _cost(self, sequence, mask):
        raise NotImplementedError

    def penalty(self, sequence, mask=None):
        """The weight times the unscaled cost: a scalar tensor, ready for ``add_loss``."""
        return self._cost(sequence, mask) * self._scale  # a Python scalar: no device tensor made

    def call(self, inputs, mask=None):
        self.add_loss(self.penalty(inputs, mask=mask))
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        return {**super().get_config(), self._weight_name: self._scale, "on": self.on}


@serializable
class NormStabilizer(_SequencePenalty):
    """Norm-stabilizer penalty β · mean(Δ‖h_t‖₂)² (Krueger & Memisevic, Sec. 1) or an alternative.

    Two uses, as the other penalties: ``LSTM(..., state_regularizer=NormStabilizer(500.0,
    on="cell"))`` (the layer calls :meth:`penalty` on its hidden or memory-cell sequence after the
    loop, with its mask, and adds it with ``add_loss``; one penalty or a list), or a layer on any
    sequence, ``y = NormStabilizer(50.0)(h_seq)``, which adds the penalty with ``add_loss`` (in
    training and inference, like Keras' activity regularizers) and returns ``h_seq`` and its mask.

    Args:
        beta: β ≥ 0, the weight of the penalty (the paper uses 50, 500, up to 1500; 1 for the
            adding task).
        cost: one of :data:`COSTS` (module docstring); "norm_diff" (default) is the
            norm-stabilizer.
        on: "hidden" or "cell": which state sequence a recurrent layer hands to :meth:`penalty`.
            Ignored by the standalone layer, which penalizes whatever it is given.
        target: the target norm of ``cost="target"`` (5.0 as in Table 3).
    """

    _weight_name = "beta"

    def __init__(self, beta, cost="norm_diff", on="hidden", target=5.0, **kwargs):
        check_choice("cost", cost, COSTS)
        super().__init__(beta, on=on, **kwargs)
        self.cost = cost
        self.target = check_real("target", target)

    @property
    def beta(self):
        return self._scale

    def _cost(self, sequence, mask):
        return state_penalty(sequence, self.cost, mask=mask, target=self.target)

    def get_config(self):
        return {**super().get_config(), "cost": self.cost, "target": self.target}


def activation_penalty(sequence, mask=None):
    """The unscaled AR cost mean(h_t²) of AWD-LSTM (Merity et al. 2017): the mean of the squared
    entries over the valid steps of the batch and over the units,
    Σ_{b,t valid} Σ_u h_{b,t,u}² / (units · number of valid steps); 0 when no step is valid.
    ``sequence`` (batch, time, units), ``mask`` as :func:`state_penalty`'s; a scalar tensor."""
    sequence, mask, _ = _prepare(sequence, mask, "activation_penalty")
    return _weighted_mean(ops.sum(sequence * sequence, axis=-1), mask) / ops.shape(sequence)[-1]


def temporal_activation_penalty(sequence, mask=None):
    """The unscaled TAR cost mean((h_t − h_{t−1})²) of AWD-LSTM (Merity et al. 2017): the mean of
    the squared entries of the T−1 differences of consecutive output states (the initial state
    is not part of the sequence, as for the norm-stabilizer), over the pairs whose *both* steps
    are valid and over the units,
    Σ_{b,t: t, t−1 valid} Σ_u (h_{b,t,u} − h_{b,t−1,u})² / (units · number of valid pairs); 0 when
    no pair is valid (e.g. T = 1). Arguments and result as :func:`activation_penalty`."""
    sequence, mask, _ = _prepare(sequence, mask, "temporal_activation_penalty")
    return _weighted_mean(*_squared_steps(sequence, mask)) / ops.shape(sequence)[-1]


def _squared_steps(sequence, mask):
    """(Σ_u (h_t − h_{t−1})², the weight of each pair: 1 where both steps are valid), (B, T) each.

    The differences come from a roll, the wrapped-around step 0 weighted 0: two slices of the
    (B, T, units) sequence made TensorFlow's backward 5x slower (StridedSliceGrad, 24 ms against
    4 ms at 81 x 100 x 200 on CPU); x * x summed is a third cheaper than square on PyTorch."""
    diff = sequence - ops.roll(sequence, 1, axis=1)
    pairs = ops.concatenate([ops.zeros_like(mask[:, :1]), mask[:, 1:] * mask[:, :-1]], axis=1)
    return ops.sum(diff * diff, axis=-1), pairs


@serializable
class ActivationRegularization(_SequencePenalty):
    """Activation regularization (AR) of AWD-LSTM (Merity et al. 2017): α · mean(h_t²)
    (:func:`activation_penalty`; unmasked, exactly AWD-LSTM's ``alpha * h.pow(2).mean()``).

    AWD-LSTM applies AR to the *dropped* output of the last layer; as a ``state_regularizer=`` it
    sees the layer's state sequence (put the standalone layer after a ``Dropout`` for AWD-LSTM's
    placement). Two uses, as :class:`NormStabilizer`.

    Args:
        alpha: α ≥ 0, the weight of the penalty (AWD-LSTM uses 2).
        on: "hidden" or "cell", as :class:`NormStabilizer`'s.

    Example:

    >>> import numpy as np
    >>> ar = ActivationRegularization(2.0)
    >>> h = np.ones((2, 3, 4), "float32")
    >>> float(ar.penalty(h))
    2.0
    """

    _weight_name = "alpha"

    def __init__(self, alpha, on="hidden", **kwargs):
        super().__init__(alpha, on=on, **kwargs)

    @property
    def alpha(self):
        return self._scale

    def _cost(self, sequence, mask):
        return activation_penalty(sequence, mask=mask)


@serializable
class TemporalActivationRegularization(_SequencePenalty):
    """Temporal activation regularization (TAR) of AWD-LSTM (Merity et al. 2017):
    β · mean((h_t − h_{t−1})²) (:func:`temporal_activation_penalty`; unmasked, exactly AWD-LSTM's
    ``beta * (h[1:] - h[:-1]).pow(2).mean()`` on the undropped output).

    Two uses, as :class:`NormStabilizer` (e.g. ``state_regularizer=[NormStabilizer(50.0),
    TemporalActivationRegularization(1.0)]``).

    Args:
        beta: β ≥ 0, the weight of the penalty (AWD-LSTM uses 1).
        on: "hidden" or "cell", as :class:`NormStabilizer`'s.

    Example:

    >>> import numpy as np
    >>> tar = TemporalActivationRegularization(1.0)
    >>> h = np.arange(3, dtype="float32").reshape(1, 3, 1)  # steps 0, 1, 2
    >>> float(tar.penalty(h))
    1.0
    """

    _weight_name = "beta"

    def __init__(self, beta, on="hidden", **kwargs):
        super().__init__(beta, on=on, **kwargs)

    @property
    def beta(self):
        return self._scale

    def _cost(self, sequence, mask):
        return temporal_activation_penalty(sequence, mask=mask)


__all__ = [
    "COSTS", "ActivationRegularization", "NormStabilizer", "TemporalActivationRegularization",
    "activation_penalty", "safe_l2_norm", "state_penalty", "temporal_activation_penalty",
]
