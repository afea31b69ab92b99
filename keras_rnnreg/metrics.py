"""The papers' evaluation numbers, as plain functions and as Keras metrics.

* NLL per timestep in nats (noise study, Sec. 10.3, Table 1): the Bernoulli NLL summed over the
  88 notes, averaged over every predicted timestep of the split (not per sequence), no padding.
* Frame-level accuracy (Bay, Ehmann & Downie 2009, as Boulanger-Lewandowski et al. 2012):
  ``TP / (TP + FP + FN)``, counts summed over the split (not averaged per frame).
* Bits per character (norm-stabilizer paper, Sec. 2.1): mean of ``-log2 p(next character)``.
* Phone error rate (Sec. 2.2): summed edit distances over summed reference lengths.

The functions take NumPy arrays or backend tensors and compute in float64. Probabilities are
clipped to ``[1e-7, 1 - 1e-7]`` (Keras' clip for cross-entropies) before logs. ``mask``
(functions) and ``sample_weight`` (metrics) have one entry per timestep, shape (N, T), 0 on
padding; Keras passes sample weights only to ``compile(weighted_metrics=[...])``. The metrics keep
their sums across batches, so ``model.evaluate`` over a split gives the function of the whole split.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_rnnreg._api import serializable

EPSILON = 1e-7

__all__ = ["BitsPerCharacter", "FrameAccuracy", "NLLPerTimestep", "bits_per_character",
           "edit_distance", "frame_accuracy", "nll_per_timestep", "phone_error_rate"]


def _numpy(x, name, dtype=np.float64):
    try:
        return np.asarray(ops.convert_to_numpy(x), dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be an array of numbers; got {type(x).__name__}") from err


def _timestep_mask(mask, shape):
    if mask is None:
        return np.ones(shape, dtype=np.float64)
    mask = _numpy(mask, "mask")
    if mask.ndim == len(shape) + 1 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    try:
        return np.broadcast_to(mask, shape)
    except ValueError as err:
        raise ValueError(f"`mask` must have one entry per timestep, shape {shape}; got shape "
                         f"{mask.shape}") from err


def _rolls(y_true, y_prob):
    y_true, y_prob = _numpy(y_true, "y_true"), _numpy(y_prob, "y_prob")
    if y_true.shape != y_prob.shape:
        raise ValueError(f"`y_true` and `y_prob` must have the same shape; got {y_true.shape} and "
                         f"{y_prob.shape}")
    if y_true.ndim < 2:
        raise ValueError(f"expected piano rolls of shape (N, T, 88) or (T, 88); got {y_true.shape}")
    return y_true, y_prob


def _mean(sums, message):
    total, count = sums
    if count <= 0:
        raise ValueError(message)
    return total / count


def nll_sums(y_true, y_prob, mask=None, from_logits=False):
    """``(summed NLL in nats, counted timesteps)``, behind :func:`nll_per_timestep`."""
    y_true, y_prob = _rolls(y_true, y_prob)
    if from_logits:  # -log sigmoid(z) = softplus(-z), -log(1 - sigmoid(z)) = softplus(z)
        nll = y_true * np.logaddexp(0.0, -y_prob) + (1.0 - y_true) * np.logaddexp(0.0, y_prob)
    else:
        p = np.clip(y_prob, EPSILON, 1.0 - EPSILON)
        nll = -(y_true * np.log(p) + (1.0 - y_true) * np.log1p(-p))
    nll = nll.sum(axis=-1)
    weights = _timestep_mask(mask, nll.shape)
    return float((nll * weights).sum()), float(weights.sum())


def nll_per_timestep(y_true, y_prob, mask=None, from_logits=False):
    """Negative log-likelihood per timestep in nats (noise study, Table 1).

    ``y_true``, ``y_prob``: (N, T, 88) (or (T, 88)) binary rolls and predicted probabilities
    (logits with ``from_logits=True``); ``mask``: (N, T) weights, 0 where a timestep does not
    count. Returns ``sum_t mask_t * (-sum_notes log p) / sum_t mask_t``.
    """
    return _mean(nll_sums(y_true, y_prob, mask, from_logits),
                 "`mask` selects no timestep: the NLL per timestep is undefined")


def frame_counts(y_true, y_prob, mask=None, threshold=0.5, from_logits=False):
    """``(TP, FP, FN)`` summed over the counted timesteps, behind :func:`frame_accuracy`."""
    y_true, y_prob = _rolls(y_true, y_prob)
    if from_logits:
        y_prob = 1.0 / (1.0 + np.exp(-y_prob))
    weights = _timestep_mask(mask, y_true.shape[:-1])[..., None]
    on_true, on_pred = y_true > 0.5, y_prob > threshold
    tp = float((weights * (on_true & on_pred)).sum())
    fp = float((weights * (~on_true & on_pred)).sum())
    fn = float((weights * (on_true & ~on_pred)).sum())
    return tp, fp, fn


def frame_accuracy(y_true, y_prob, mask=None, threshold=0.5, from_logits=False):
    """Frame-level accuracy ``TP / (TP + FP + FN)`` (Bay et al. 2009) over the counted timesteps.

    Arguments as :func:`nll_per_timestep`'s; a note is predicted when its probability is
    ``> threshold``. Returns 0.0 when nothing is on in either roll.
    """
    tp, fp, fn = frame_counts(y_true, y_prob, mask, threshold, from_logits)
    denominator = tp + fp + fn
    return tp / denominator if denominator > 0 else 0.0


def bpc_sums(y_true, y_prob, mask=None, from_logits=False):
    """``(summed -log2 p in bits, counted characters)``, behind :func:`bits_per_character`."""
    y_prob = _numpy(y_prob, "y_prob")
    y_true = _numpy(y_true, "y_true", dtype=np.int64)
    if y_prob.shape[:-1] != y_true.shape:
        raise ValueError("`y_true` must hold class ids of shape y_prob.shape[:-1]; got "
                         f"{y_true.shape} and {y_prob.shape}")
    vocab = y_prob.shape[-1]
    if y_true.size and (y_true.min() < 0 or y_true.max() >= vocab):
        raise ValueError(f"`y_true` holds ids outside [0, {vocab}) (the last axis of y_prob)")
    if from_logits:
        shifted = y_prob - y_prob.max(axis=-1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    else:
        log_p = np.log(np.clip(y_prob, EPSILON, 1.0))
    picked = np.take_along_axis(log_p, y_true[..., None], axis=-1)[..., 0]
    weights = _timestep_mask(mask, y_true.shape)
    return float(-(picked * weights).sum() / math.log(2.0)), float(weights.sum())


def bits_per_character(y_true, y_prob, mask=None, from_logits=False):
    """Bits per character (norm-stabilizer paper, 2.1): mean of ``-log2 p(y_true)``.

    ``y_true``: (N, T) character ids; ``y_prob``: (N, T, V) probabilities (logits with
    ``from_logits=True``); ``mask``: (N, T) weights.
    """
    return _mean(bpc_sums(y_true, y_prob, mask, from_logits),
                 "`mask` selects no character: bits per character are undefined")


def edit_distance(reference, hypothesis):
    """Levenshtein distance (substitutions, insertions, deletions, each cost 1)."""
    reference, hypothesis = list(reference), list(hypothesis)
    previous = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, h in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1]


def phone_error_rate(references, hypotheses):
    """Phone error rate over a split: summed edit distances / summed reference lengths.

    ``references``, ``hypotheses``: sequences of phone sequences (strings or ids), already
    folded to the scoring set (see :func:`keras_rnnreg.data.timit.fold`).
    """
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"got {len(references)} references but {len(hypotheses)} hypotheses; "
                         "expected one hypothesis per reference")
    edits = sum(edit_distance(r, h) for r, h in zip(references, hypotheses))
    return _mean((edits, sum(len(r) for r in references)),
                 "the references are empty: the phone error rate is undefined")


def _timestep_weights(sample_weight, values):
    """``sample_weight`` as a tensor of ``values``' shape (N, T); ones when None."""
    if sample_weight is None:
        return ops.ones_like(values)
    weights = ops.cast(sample_weight, values.dtype)
    if len(weights.shape) == len(values.shape) + 1:
        weights = ops.squeeze(weights, axis=-1)
    while len(weights.shape) < len(values.shape):
        weights = ops.expand_dims(weights, axis=-1)
    return ops.broadcast_to(weights, ops.shape(values))


class _SumCountMetric(keras.metrics.Metric):
    """A ratio of two running sums, so that the result over many batches is the split's."""

    def __init__(self, name, from_logits, dtype):
        super().__init__(name=name, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def _accumulate(self, values, sample_weight):
        weights = _timestep_weights(sample_weight, values)
        self.total.assign_add(ops.sum(values * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


@serializable
class NLLPerTimestep(_SumCountMetric):
    """:func:`nll_per_timestep` (noise study, Table 1) as a Keras metric.

    ``y_true``, ``y_pred``: (N, T, 88); ``sample_weight``: (N, T), 0 on padded timesteps (the
    third element the ``keras_rnnreg.data`` pipelines yield).

    Args:
        name: the metric's name in the logs.
        from_logits: ``y_pred`` holds logits instead of probabilities.
        dtype: the dtype of the running sums.

    Examples:
        >>> import numpy as np
        >>> from keras_rnnreg.metrics import NLLPerTimestep
        >>> y_true = np.zeros((1, 2, 88), "float32")
        >>> y_prob = np.full((1, 2, 88), 0.5, "float32")
        >>> metric = NLLPerTimestep()
        >>> metric.update_state(y_true, y_prob, sample_weight=np.array([[1.0, 0.0]]))
        >>> round(float(metric.result()), 3)  # 88 ln 2 nats; the padded step does not count
        60.997
    """

    def __init__(self, name="nll_per_timestep", from_logits=False, dtype=None):
        super().__init__(name, from_logits, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(y_pred, self.dtype)
        y_true = ops.cast(y_true, self.dtype)
        if self.from_logits:
            log_lik = y_true * ops.log_sigmoid(y_pred) + (1.0 - y_true) * ops.log_sigmoid(-y_pred)
        else:
            p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
            log_lik = y_true * ops.log(p) + (1.0 - y_true) * ops.log1p(-p)
        self._accumulate(-ops.sum(log_lik, axis=-1), sample_weight)


@serializable
class FrameAccuracy(keras.metrics.Metric):
    """:func:`frame_accuracy` ``TP / (TP + FP + FN)`` (Bay et al. 2009) as a Keras metric.

    ``sample_weight`` (N, T) as :class:`NLLPerTimestep`'s.

    Args:
        name: the metric's name in the logs.
        threshold: a note is predicted on when its probability is above this (0 < threshold < 1).
        from_logits: ``y_pred`` holds logits instead of probabilities.
        dtype: the dtype of the running counts.

    Examples:
        >>> import numpy as np
        >>> from keras_rnnreg.metrics import FrameAccuracy
        >>> y_true, y_prob = np.zeros((1, 1, 88), "float32"), np.zeros((1, 1, 88), "float32")
        >>> y_true[0, 0, [40, 44]] = 1.0
        >>> y_prob[0, 0, [40, 47]] = 0.9
        >>> metric = FrameAccuracy()
        >>> metric.update_state(y_true, y_prob)
        >>> round(float(metric.result()), 4)  # TP 1, FP 1, FN 1
        0.3333
    """

    def __init__(self, name="frame_accuracy", threshold=0.5, from_logits=False, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"`threshold` must lie strictly between 0 and 1; got {threshold!r}")
        self.threshold = float(threshold)
        self.from_logits = bool(from_logits)
        self.true_positives, self.false_positives, self.false_negatives = (
            self.add_variable(shape=(), initializer="zeros", name=n) for n in ("tp", "fp", "fn"))

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(y_pred, self.dtype)
        cut = self.threshold
        if self.from_logits:  # sigmoid(z) > t  <=>  z > log(t / (1 - t))
            cut = math.log(self.threshold / (1.0 - self.threshold))
        on_pred = ops.cast(ops.greater(y_pred, cut), self.dtype)
        on_true = ops.cast(ops.greater(ops.cast(y_true, self.dtype), 0.5), self.dtype)
        weights = ops.expand_dims(_timestep_weights(sample_weight, on_true[..., 0]), axis=-1)
        self.true_positives.assign_add(ops.sum(weights * on_true * on_pred))
        self.false_positives.assign_add(ops.sum(weights * (1.0 - on_true) * on_pred))
        self.false_negatives.assign_add(ops.sum(weights * on_true * (1.0 - on_pred)))

    def result(self):
        denominator = self.true_positives + self.false_positives + self.false_negatives
        return ops.divide_no_nan(self.true_positives, denominator)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold,
                "from_logits": self.from_logits}


@serializable
class BitsPerCharacter(_SumCountMetric):
    """:func:`bits_per_character` (norm-stabilizer paper, 2.1) as a Keras metric.

    ``y_true``: (N, T) character ids; ``y_pred``: (N, T, V); ``sample_weight`` (N, T) as
    :class:`NLLPerTimestep`'s.

    Args:
        name: the metric's name in the logs.
        from_logits: ``y_pred`` holds logits instead of probabilities.
        dtype: the dtype of the running sums.

    Examples:
        >>> import numpy as np
        >>> from keras_rnnreg.metrics import BitsPerCharacter
        >>> metric = BitsPerCharacter()
        >>> metric.update_state(np.array([[0, 3]]), np.full((1, 2, 4), 0.25, "float32"))
        >>> round(float(metric.result()), 4)  # four equally likely symbols: 2 bits each
        2.0
    """

    def __init__(self, name="bits_per_character", from_logits=False, dtype=None):
        super().__init__(name, from_logits, dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(y_pred, self.dtype)
        if self.from_logits:
            log_p = ops.log_softmax(y_pred, axis=-1)
        else:
            log_p = ops.log(ops.clip(y_pred, EPSILON, 1.0))
        ids = ops.cast(y_true, "int32")
        if len(ids.shape) == len(log_p.shape):
            ids = ops.squeeze(ids, axis=-1)
        picked = ops.take_along_axis(log_p, ops.expand_dims(ids, axis=-1), axis=-1)[..., 0]
        self._accumulate(-picked / math.log(2.0), sample_weight)
