"""A spectral-radius limit on recurrent kernels (noise study Sec. 6.1, 6.2; Appendix B "ρ limit").

Keras applies a variable's ``constraint`` in the optimizer right after each update
(``variable.assign(constraint(variable))``), inside the compiled train step; so
:class:`SpectralRadiusLimit` is written with ``keras.ops`` only and runs under ``jax.jit``,
``tf.function`` and eager PyTorch.
"""

import keras
from keras import ops

from keras_rnnreg._api import check_int, check_positive, serializable

METHODS = ("power", "exact")


@serializable
class SpectralRadiusLimit(keras.constraints.Constraint):
    """Rescale a recurrent kernel whose spectral radius exceeds ``max_radius`` down to it.

    After every update, W is replaced by ``W · max_radius / ρ(W)`` when ``ρ(W) > max_radius``
    and left exactly unchanged otherwise (noise study Sec. 6.2: the spectral radius "restricted to
    be close to 1 (1.1, 0.9 etc.)"; Appendix B's ρ limit ∈ {0.9, 1.0, 1.1}). Since ρ(cW) = c·ρ(W),
    the rescaled matrix sits exactly at the limit. ``method="power"`` was also checked under
    ``jit_compile=True`` on TensorFlow (XLA) and PyTorch (``torch.compile``), on CPU.

    Methods for ρ:

    * ``"power"`` (default): the spectral norm σ_max(W) (largest singular value) by ``iterations``
      steps of power iteration on WᵀW, in ``keras.ops``. σ_max ≥ ρ, so this limits an *upper
      bound* of the spectral radius: a matrix it leaves alone is certainly within the limit,
      and a rescaled one has ρ ≤ σ_max ≈ ``max_radius`` (for non-normal matrices ρ can be well
      below). Power iteration approaches σ_max from below: with too few iterations the estimate
      is a little low and σ_max of the result can exceed the limit by that (small) margin. The
      start vector is fixed and dense (not random, so nothing random is drawn in the train step).
    * ``"exact"``: the largest |eigenvalue| by ``keras.ops.eig``. Checked on CPU: works eagerly
      and compiled on JAX (``jax.jit``), TensorFlow (``tf.function`` without XLA, which is what
      ``jit_compile="auto"`` picks on CPU-only machines) and PyTorch (eager, and
      ``jit_compile=True``, i.e. ``torch.compile``). TensorFlow's XLA has no
      kernel for a non-symmetric eigendecomposition, so with ``jit_compile=True`` on TensorFlow
      (the "auto" choice when a GPU is present) compilation fails with "Detected unsupported
      operations ... Eig": there, compile with ``jit_compile=False`` or use ``method="power"``.

    A gate-stacked kernel (n, k·n) — an LSTM's recurrent kernel — is limited block by block: each
    (n, n) gate block ``[:, j·n:(j+1)·n]`` separately.

    Args:
        max_radius: the limit, > 0.
        method: "power" or "exact".
        iterations: power-iteration steps (``method="power"`` only), ≥ 1.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_rnnreg.constraints import SpectralRadiusLimit
        >>> from keras_rnnreg.initializers import spectral_radius
        >>> limit = SpectralRadiusLimit(max_radius=1.0, method="exact")
        >>> round(spectral_radius(limit(np.diag([2.0, 0.5]).astype("float32"))), 5)
        1.0
        >>> layer = keras.layers.SimpleRNN(8, recurrent_constraint=SpectralRadiusLimit(1.1))
    """

    def __init__(self, max_radius=1.1, method="power", iterations=20):
        self.max_radius = check_positive("max_radius", max_radius)
        if method not in METHODS:
            raise ValueError(f"Unknown method={method!r}: expected 'power' or 'exact'.")
        self.method = method
        self.iterations = check_int("iterations", iterations)

    def __call__(self, w):
        w = ops.convert_to_tensor(w)
        shape = tuple(w.shape)
        if len(shape) != 2 or not shape[0] or shape[1] % shape[0]:
            raise ValueError("SpectralRadiusLimit expects a square recurrent kernel (n, n) or a "
                             f"gate-stacked one (n, k*n); received shape={shape}.")
        n, width = shape
        k = width // n
        blocks = ops.transpose(ops.reshape(w, (n, k, n)), (1, 0, 2))  # (k, n, n)
        if self.method == "exact":
            radius = self._exact_radius(blocks)
        else:
            radius = self._spectral_norm(blocks)
        radius = ops.cast(radius, w.dtype)
        limit = ops.cast(self.max_radius, w.dtype)
        over = radius > limit
        scale = ops.where(over, limit / ops.where(over, radius, ops.ones_like(radius)), 1.0)
        blocks = blocks * ops.reshape(scale, (k, 1, 1))
        return ops.reshape(ops.transpose(blocks, (1, 0, 2)), (n, width))

    @staticmethod
    def _exact_radius(blocks):
        eigenvalues, _ = ops.eig(blocks)
        return ops.max(ops.abs(eigenvalues), axis=-1)

    def _spectral_norm(self, blocks):
        k, n, _ = blocks.shape
        dtype = blocks.dtype
        # A fixed, dense, "generic" start vector (all entries in [0.1, 2.1]).
        v = ops.sin(ops.arange(n, dtype=dtype) * 1.618 + 0.5) + 1.1
        v = ops.tile(ops.reshape(v / ops.norm(v), (1, n, 1)), (k, 1, 1))
        blocks_t = ops.transpose(blocks, (0, 2, 1))
        tiny = ops.cast(1e-30, dtype)

        def step(_, v):
            u = ops.matmul(blocks, v)
            u = u / (ops.norm(u, axis=1, keepdims=True) + tiny)
            v = ops.matmul(blocks_t, u)
            return v / (ops.norm(v, axis=1, keepdims=True) + tiny)

        v = ops.fori_loop(0, self.iterations, step, v)
        return ops.norm(ops.matmul(blocks, v), axis=(1, 2))

    def get_config(self):
        return {"max_radius": self.max_radius, "method": self.method, "iterations": self.iterations}


__all__ = ["METHODS", "SpectralRadiusLimit"]
