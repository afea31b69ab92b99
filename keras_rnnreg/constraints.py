"""A spectral-radius limit on recurrent kernels (noise study Sec. 6.1, 6.2; Appendix B "ρ limit").

Keras applies a variable's ``constraint`` in the optimizer right after each update
(``variable.assign(constraint(variable))``), inside the compiled train step; so
:class:`SpectralRadiusLimit` is written with ``keras.ops`` only and runs under ``jax.jit``,
``tf.function`` and eager PyTorch.
"""

import keras
from keras import ops

from keras_rnnreg._api import check_choice, check_int, check_positive, serializable

METHODS = ("power", "exact")


@serializable
class SpectralRadiusLimit(keras.constraints.Constraint):
    """Rescale a recurrent kernel whose spectral radius exceeds ``max_radius`` down to it.

    After every update, W becomes ``W · max_radius / ρ(W)`` when ``ρ(W) > max_radius`` and is
    left exactly unchanged otherwise (noise study Sec. 6.2: "restricted to be close to 1 (1.1, 0.9
    etc.)"; Appendix B's ρ limit). A gate-stacked kernel (n, k·n) is limited block by block.

    Methods for ρ:

    * ``"power"`` (default): limits the spectral norm σ_max(W) ≥ ρ, an *upper bound* of ρ, found
      by ``iterations`` steps of power iteration on WᵀW from a fixed start vector (too few steps
      underestimate it slightly).
    * ``"exact"``: the largest |eigenvalue| by ``keras.ops.eig``. TensorFlow's XLA has no
      non-symmetric eigendecomposition: with ``jit_compile=True`` on TensorFlow (the "auto" choice
      with a GPU) compilation fails ("Detected unsupported operations ... Eig"); compile with
      ``jit_compile=False`` or use ``"power"`` there.

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
        self.method = check_choice("method", method, METHODS)
        self.iterations = check_int("iterations", iterations)

    def __call__(self, w):
        w = ops.convert_to_tensor(w)
        shape = tuple(w.shape)
        if len(shape) != 2 or not shape[0] or shape[1] % shape[0]:
            raise ValueError("SpectralRadiusLimit expects a square recurrent kernel (n, n) or a "
                             f"gate-stacked one (n, k*n); received shape={shape}.")
        (n, width), k = shape, shape[1] // shape[0]
        blocks = ops.transpose(ops.reshape(w, (n, k, n)), (1, 0, 2))  # (k, n, n)
        if self.method == "exact":
            radius = ops.max(ops.abs(ops.eig(blocks)[0]), axis=-1)
        else:
            radius = self._spectral_norm(blocks)
        radius = ops.cast(radius, w.dtype)
        limit = ops.cast(self.max_radius, w.dtype)
        over = radius > limit
        scale = ops.where(over, limit / ops.where(over, radius, ops.ones_like(radius)), 1.0)
        blocks = blocks * ops.reshape(scale, (k, 1, 1))
        return ops.reshape(ops.transpose(blocks, (1, 0, 2)), (n, width))

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
