"""Initializers of the "well-initialised plain RNN" (noise study Sec. 6.1, 6.2 and Appendix B).

* :class:`Sparse`: "all but 15 (or some) connection weights are set to zero, and the rest are
  sampled from a Gaussian" (Sec. 6.1, after Martens 2010 and Sutskever et al. 2013).
* :class:`SpectralRadius`: any initializer rescaled to a spectral radius "restricted to be close
  to 1 (1.1, 0.9 etc.)" (Sec. 6.2), e.g. ``SpectralRadius(Sparse(15, stddev=...), radius=1.1)``.

The norm-stabilizer paper's IRNN (identity W_hh, footnote 1) and the adding task's uniform
[−.01, .01] (Sec. 2.3) are Keras' ``"identity"`` and ``RandomUniform(-0.01, 0.01)``.
"""

import numbers
import random as python_random

import keras
import numpy as np
from keras import ops

from keras_rnnreg._api import check_int, check_positive, serializable


def _check_seed(seed):
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"Invalid value for argument seed={seed!r}: expected None, an int or a "
                         "keras.random.SeedGenerator.")
    return int(seed)


def _check_matrix_shape(shape, name):
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise ValueError(f"{name} initializes 2-D kernels (fan_in, units); received shape={shape}.")
    return shape


@serializable
class Sparse(keras.initializers.Initializer):
    """Sparse initialization (Martens 2010; Sutskever et al. 2013; noise study Sec. 6.1).

    For a kernel (fan_in, width), each column — one unit's (or gate's) incoming weights — gets
    exactly ``connections`` nonzero entries at positions drawn uniformly without replacement, with
    values from N(0, stddev²); when ``fan_in <= connections`` the column is dense Gaussian.

    Args:
        connections: nonzero incoming weights per unit (15 in Martens 2010; Appendix B: 15, 25, 50).
        stddev: standard deviation σ of the nonzero weights (Appendix B tunes σ).
        seed: None, an int, or a ``keras.random.SeedGenerator``. As Keras' initializers, an int
            or None gives the same matrix on every call (None: a seed drawn at construction); a
            SeedGenerator a new matrix on each call.

    Examples:
        >>> import keras, numpy as np
        >>> from keras_rnnreg import initializers
        >>> w = initializers.Sparse(connections=15, stddev=0.1, seed=0)((100, 50))
        >>> np.count_nonzero(keras.ops.convert_to_numpy(w), axis=0)[:5]  # 15 inputs per unit
        array([15, 15, 15, 15, 15])
        >>> layer = keras.layers.SimpleRNN(50, kernel_initializer=initializers.Sparse(15, 0.1))
    """

    def __init__(self, connections=15, stddev=1.0, seed=None):
        self.connections = check_int("connections", connections)
        self.stddev = check_positive("stddev", stddev)
        self._init_seed = _check_seed(seed)
        self.seed = python_random.randint(1, int(1e9)) if seed is None else self._init_seed

    def __call__(self, shape, dtype=None):
        fan_in, width = _check_matrix_shape(shape, "Sparse")
        dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
        position_seed = value_seed = self.seed
        if not isinstance(self.seed, keras.random.SeedGenerator):  # two different int seeds
            value_seed = self.seed + 1
        values = keras.random.normal((fan_in, width), stddev=self.stddev, seed=value_seed,
                                     dtype=dtype)
        if fan_in <= self.connections:
            return values
        # Rank of uniform noise within each column: the `connections` smallest ranks stay.
        noise = keras.random.uniform((fan_in, width), seed=position_seed)
        ranks = ops.argsort(ops.argsort(noise, axis=0), axis=0)
        return values * ops.cast(ranks < self.connections, dtype)

    def get_config(self):
        seed = self._init_seed
        if isinstance(seed, keras.random.SeedGenerator):
            seed = keras.saving.serialize_keras_object(seed)
        return {"connections": self.connections, "stddev": self.stddev, "seed": seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("seed"), dict):
            config["seed"] = keras.saving.deserialize_keras_object(config["seed"])
        return cls(**config)


def spectral_radius(matrix):
    """Largest |eigenvalue| of a square NumPy-convertible matrix (float64 NumPy)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return float(np.max(np.abs(np.linalg.eigvals(matrix)))) if matrix.size else 0.0


def square_blocks(shape):
    """Number of (n, n) blocks of an (n, k·n) kernel; ValueError for other shapes."""
    rows, cols = shape
    if rows == 0 or cols % rows:
        raise ValueError("Expected a square recurrent kernel (n, n) or a gate-stacked one (n, "
                         f"k*n); received shape={tuple(shape)}.")
    return cols // rows


@serializable
class SpectralRadius(keras.initializers.Initializer):
    """Any initializer, rescaled to a spectral radius (noise study Sec. 6.1, 6.2; Appendix B).

    Multiplies ``base``'s (n, n) matrix by ``radius / ρ``, ρ its largest |eigenvalue| (NumPy,
    float64). A gate-stacked kernel (n, k·n) is rescaled block by block (each (n, n) gate block).

    Args:
        base: a Keras initializer, or its name or config (e.g. ``Sparse(15)``, ``"orthogonal"``).
        radius: the target spectral radius, > 0 (Appendix B: 0.9, 1.0, 1.1).

    Raises ValueError if a block has spectral radius 0 (e.g. all zeros, or nilpotent), which no
    rescaling can fix.

    Examples:
        >>> import numpy as np
        >>> from keras_rnnreg.initializers import Sparse, SpectralRadius, spectral_radius
        >>> init = SpectralRadius(Sparse(15, seed=0), radius=1.1)  # the noise study's recipe
        >>> round(spectral_radius(init((100, 100))), 5)
        1.1
        >>> [round(r, 5) for r in map(spectral_radius, np.split(init((20, 80)), 4, axis=1))]
        [1.1, 1.1, 1.1, 1.1]
    """

    def __init__(self, base="glorot_uniform", radius=1.1):
        self.radius = check_positive("radius", radius)
        try:
            self.base = keras.initializers.get(base)
        except (ValueError, TypeError) as err:
            raise ValueError(f"Invalid value for argument base={base!r}: expected a Keras "
                             "initializer, its name or its config.") from err

    def __call__(self, shape, dtype=None):
        rows, cols = _check_matrix_shape(shape, "SpectralRadius")
        blocks = square_blocks((rows, cols))
        dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
        matrix = np.array(ops.convert_to_numpy(self.base((rows, cols), dtype=dtype)), np.float64)
        for j in range(blocks):
            block = matrix[:, j * rows : (j + 1) * rows]
            rho = spectral_radius(block)
            if not rho > 0:
                raise ValueError(f"SpectralRadius: the base initializer {self.base!r} gave a block "
                                 "with spectral radius 0, which cannot be rescaled; use a denser "
                                 "or different base.")
            matrix[:, j * rows : (j + 1) * rows] = block * (self.radius / rho)
        return ops.convert_to_tensor(matrix, dtype=dtype)

    def get_config(self):
        return {"base": keras.initializers.serialize(self.base), "radius": self.radius}


__all__ = ["Sparse", "SpectralRadius", "spectral_radius", "square_blocks"]
