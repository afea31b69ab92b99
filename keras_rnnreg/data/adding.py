"""The adding problem (norm-stabilizer paper, section 2.3; Le, Jaitly & Hinton 2015).

Channel 0 holds values from U[0, 1], channel 1 is 1 at two marked positions (0 elsewhere); the
target is the sum of the two marked values (length 400 in the paper). As in Le et al. 2015,
Sec. 4.1, the first marker is uniform in positions ``0 .. length // 2 - 1``, the second in
``length // 2 .. length - 1``. Baseline MSEs, with U, V the marked values: predicting the
constant 1, ``Var(U + V) = 1/6``; "short-sighted" (the paper's 1/12), predicting the second value
plus 0.5, ``Var(U) = 1/12``.
"""

import numpy as np

from keras_rnnreg._api import check_int
from keras_rnnreg.data import _batching

LENGTH = 400
CONSTANT_BASELINE_MSE = 1.0 / 6.0
SHORT_SIGHTED_BASELINE_MSE = 1.0 / 12.0

__all__ = ["CONSTANT_BASELINE_MSE", "SHORT_SIGHTED_BASELINE_MSE", "baselines", "generate",
           "make_dataset"]


def generate(n, length=LENGTH, seed=0):
    """``n`` sequences: inputs (n, length, 2) and targets (n, 1), float32, fixed by ``seed``."""
    n = check_int("n", n)
    length = check_int("length", length)
    if length < 2:
        raise ValueError(f"`length` must be at least 2 (two marked positions); got {length}")
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(n, length))
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length))
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = np.stack([values, markers], axis=-1).astype(np.float32)
    targets = (values[rows, first] + values[rows, second])[:, None].astype(np.float32)
    return inputs, targets


def baselines(inputs, targets):
    """The two reference errors on a generated set, beside their expected values.

    Returns ``{"constant": MSE of predicting 1, "short_sighted": MSE of predicting the second
    marked value + 0.5, "expected_constant": 1/6, "expected_short_sighted": 1/12}``.
    """
    inputs = np.asarray(inputs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    if inputs.ndim != 3 or inputs.shape[-1] != 2:
        raise ValueError(f"`inputs` must have shape (n, length, 2); got {inputs.shape}")
    marked = inputs[..., 1] > 0.5
    if not (marked.sum(axis=1) == 2).all():
        raise ValueError("every sequence must have exactly two marked positions (channel 1)")
    if len(inputs) != len(targets):
        raise ValueError(f"got {len(inputs)} input sequences but {len(targets)} targets")
    second = inputs[..., 0][marked].reshape(-1, 2)[:, 1]  # row-major: each row's two in order
    return {"constant": float(np.mean((targets - 1.0) ** 2)),
            "short_sighted": float(np.mean((targets - (second + 0.5)) ** 2)),
            "expected_constant": CONSTANT_BASELINE_MSE,
            "expected_short_sighted": SHORT_SIGHTED_BASELINE_MSE}


def make_dataset(n, batch_size, length=LENGTH, seed=0, shuffle=True, **kwargs):
    """A ``keras.utils.PyDataset`` of ``(inputs, targets)`` batches of :func:`generate` data."""
    inputs, targets = generate(n, length=length, seed=seed)
    return _batching.ArrayBatches((inputs, targets), batch_size, shuffle=shuffle, seed=seed,
                                  **kwargs)
