"""Fast dropout for recurrent networks (noise study Sec. 6.5: RNN-FD of Table 1).

Wang & Manning (2013) replace sampled dropout by a Gaussian approximation of the pre-activation;
Bayer et al. (2013) apply it to RNNs "by concatenating the input-to-hidden and hidden-to-hidden
weights into a single array, and applying the same approximation to the incoming connections".

**Pre-activation.** Unit k receives ``a_k = Σ_j (d_j / p) w_jk z_j + b_k`` over z = [x_t, h_{t−1}],
d_j ~ Bernoulli(p), p = 1 − rate (``recurrent_rate`` for the h part). The 1/p scaling is applied
in training ("inverted" dropout), so the trained weights are those of the inference network (Wang
& Manning scale by p at test time instead). h_{t−1} has mean μ and variance s² (carried through
time). With the d_j independent and the z_j treated as independent (the usual assumption),

    E[a_k]   = Σ_j w_jk μ_j + b_k
    Var[a_k] = Σ_j w_jk² (s_j² + (1 − p) μ_j²) / p            (s_j = 0, μ_j = x_j for the input)

exact for these two moments; a_k is then taken to be Gaussian N(E, Var). No samples are drawn.

**Through the nonlinearity** (``moments=``), h = f(a) with a ~ N(m, v):

* ``"quadrature"`` (default): K-point Gauss–Hermite quadrature (K = ``quadrature_points``); with
  K = 16 and m ∈ [−4, 4] the variance error is < 1e-3 for v ≤ 1, 0.02 at v = 4, 0.1 at v = 16.
* ``"probit"``: closed forms from σ(x) ≈ Φ(√(π/8) x) (MacKay 1992; Wang & Manning), with
  tanh(x) = 2σ(2x) − 1: E[σ(a)] ≈ σ(κ m), κ = (1 + π v / 8)^(−1/2); E[tanh(a)] ≈ tanh(κ' m),
  κ' = (1 + π v / 2)^(−1/2); from E[f'(a)] = ∂E[f(a)]/∂m, Var[σ(a)] ≈ (1 − κ) σ(κm)(1 − σ(κm)),
  Var[tanh(a)] ≈ (1 − κ') (1 − tanh²(κ'm)). Errors (m ∈ [−4, 4], v ≤ 16): tanh mean ≤ 0.03,
  variance ≤ 0.055; sigmoid mean ≤ 0.009, variance ≤ 0.011.
* ``activation="linear"``: (m, v) unchanged, exactly.

**The output and the loss.** :class:`FastDropoutRNN` returns the hidden mean sequence (and with
``return_variance=True`` the variance). :class:`FastDropoutDense` returns, in training, E[σ(a)]:
binary cross-entropy on it is −log E_d[p(y | x, d)] exactly (a Bernoulli likelihood is linear in
σ(a)), the negative log *marginal* likelihood under the Gaussian approximation, one output unit at
a time (not E_d[−log p], larger by Jensen). RNN-FD on the polyphonic-music data is
``FastDropoutRNN(..., return_variance=True)`` → ``FastDropoutDense(88)``, ``binary_crossentropy``.

**Inference** (``training=False``), ``inference=``: ``"mean"`` (default), the deterministic mean
network h_t = f(x_t W + h_{t−1} U + b), variance outputs zeros (with ``activation="tanh"`` exactly
``keras.layers.SimpleRNN``, whose weights it has); ``"marginal"``, the training computation.

**Weight perturbations** (``perturbations=``, noise study Secs. 8-9): the drawn W̃ (Ũ) replaces W
(U) in the moment equations (the moments of the dropout noise given the drawn weights).
``sampling="local"`` is refused: this layer never samples the incoming units.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_rnnreg._api import check_choice, check_int, check_rate, serializable
from keras_rnnreg.layers.base import _WEIGHT_ARGUMENTS, FusedRNN, inherited_arguments

ACTIVATIONS = ("tanh", "sigmoid", "linear")
MOMENTS = ("quadrature", "probit")
INFERENCE = ("mean", "marginal")


def hermite_gauss(points):
    """Nodes (descending) and weights, two lists of floats, of the ``points``-point Gauss–Hermite
    rule ∫ e^{−x²} f(x) dx ≈ Σ wᵢ f(xᵢ) (NumPy's ``hermgauss``)."""
    nodes, weights = np.polynomial.hermite.hermgauss(int(points))
    return nodes[::-1].tolist(), weights[::-1].tolist()


def _safe_sqrt(x):
    """sqrt(max(x, 0)) with gradient 0 (not inf/NaN) at x = 0."""
    positive = x > 0
    root = ops.sqrt(ops.where(positive, x, ops.ones_like(x)))
    return ops.where(positive, root, ops.zeros_like(x))


def _activation_fn(name):
    return {"tanh": ops.tanh, "sigmoid": ops.sigmoid, "linear": lambda a: a}[name]


def gaussian_moments(mean, variance, activation="tanh", moments="quadrature", quadrature_points=16):
    """Mean and variance of f(a) for a ~ N(mean, variance), f = tanh, sigmoid or linear
    (``moments="quadrature"`` / ``"probit"``: module docstring)."""
    if activation == "linear":
        return mean, variance
    if moments == "probit":
        if activation == "tanh":
            kappa = ops.rsqrt(1.0 + (math.pi / 2.0) * variance)
            out = ops.tanh(kappa * mean)
            return out, (1.0 - kappa) * (1.0 - ops.square(out))
        kappa = ops.rsqrt(1.0 + (math.pi / 8.0) * variance)
        out = ops.sigmoid(kappa * mean)
        return out, (1.0 - kappa) * out * (1.0 - out)
    nodes, weights = hermite_gauss(quadrature_points)
    dtype = mean.dtype
    nodes = ops.convert_to_tensor([math.sqrt(2.0) * x for x in nodes], dtype=dtype)
    weights = ops.convert_to_tensor([w / math.sqrt(math.pi) for w in weights], dtype=dtype)
    points = ops.expand_dims(mean, -1) + ops.expand_dims(_safe_sqrt(variance), -1) * nodes
    values = _activation_fn(activation)(points)
    out = ops.sum(values * weights, axis=-1)
    var = ops.sum(ops.square(values - ops.expand_dims(out, -1)) * weights, axis=-1)
    return out, var


def dropout_moments(mean, variance, kernel, keep):
    """Mean and variance of ``(d / keep · z) @ kernel``, d ~ Bernoulli(keep) per incoming unit, z
    independent with ``mean`` and ``variance`` (None: deterministic); module docstring."""
    spread = (1.0 - keep) * ops.square(mean)
    if variance is not None:
        spread = spread + variance
    if keep != 1.0:
        spread = spread / keep
    return ops.matmul(mean, kernel), ops.matmul(spread, ops.square(kernel))


def _check_activation(activation):
    return check_choice("activation", "linear" if activation is None else activation, ACTIVATIONS)


class _FastDropoutArgs:
    """The fast-dropout arguments of both layers: checked, stored and configured in one place."""

    def _set_fast_dropout_args(self, rate, moments, quadrature_points, return_variance, inference):
        self.rate = check_rate("rate", rate)
        self.moments = check_choice("moments", moments, MOMENTS)
        self.quadrature_points = check_int("quadrature_points", quadrature_points, 2, 100)
        self.return_variance = bool(return_variance)
        self.inference = check_choice("inference", inference, INFERENCE)

    def _fast_dropout_config(self):
        keys = ("rate", "moments", "quadrature_points", "return_variance", "inference")
        return {key: getattr(self, key) for key in keys}

    def _propagates_moments(self, training):  # in training, and with inference="marginal"
        return bool(training) or self.inference == "marginal"

    def _moments(self, mean, variance):
        return gaussian_moments(mean, variance, self.activation_name, self.moments,
                                self.quadrature_points)


@serializable
class FastDropoutRNN(_FastDropoutArgs, FusedRNN):
    """Fast-dropout RNN: ``h_t = f(x_t W + h_{t−1} U + b)``, dropout on [x_t, h_{t−1}] replaced in
    training by each unit's mean and variance carried through time (module docstring).

    Args:
        units: number of hidden units.
        rate: dropout rate of the input connections (probability of dropping x_j), 0 ≤ rate < 1.
        recurrent_rate: dropout rate of the recurrent connections (h_{t−1, j}); None: ``rate``.
        activation: "tanh" (the noise study's hidden units), "sigmoid" or "linear".
        moments: "quadrature" (Gauss–Hermite, default) or "probit" (closed forms).
        quadrature_points: points of the Gauss–Hermite rule (2–100; 16 by default).
        return_sequences: return the whole mean sequence (B, T, units), not only the last step.
        return_variance: also return the variance, as a second output: ``[mean, variance]``.
        inference: "mean" (default) or "marginal" (module docstring, **Inference**).
        perturbations: weight noise / DropConnect with ``sampling="weight"``, in training only.
        state_regularizer: a penalty (or a list) on the mean hidden-state sequence.
        go_backwards, unroll, return_state, stateful, seed, zero_output_for_mask, use_bias,
            *_initializer, *_regularizer, *_constraint, masks: as
            :class:`~keras_rnnreg.layers.SimpleRNN`; the states are ``[mean, variance]``.

    Call arguments: ``sequences`` (B, T, F); ``initial_state``: None, ``h0`` (variance zero) or
    ``[h0_mean, h0_variance]``; ``mask`` (B, T); ``training``.
    """

    _keras_implementation_arg = False
    _keras_use_cudnn_arg = False
    _sequences_available = ("hidden", "variance")
    _supports_zoneout = False  # zoneout would mix the variance too: not the paper's method
    _no_cudnn_reason = "FastDropoutRNN has no cuDNN path (it propagates a mean and a variance)"

    def __init__(self, units, rate=0.5, recurrent_rate=None, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, moments="quadrature", quadrature_points=16,
                 return_sequences=False, return_variance=False, go_backwards=False, unroll=False,
                 *, inference="mean", return_state=False, stateful=False, seed=None,
                 zero_output_for_mask=False, perturbations=None, state_regularizer=None,
                 activity_regularizer=None, **kwargs):
        activation = _check_activation(activation)
        for key in sorted({"dropout", "recurrent_dropout"} & kwargs.keys()):
            raise ValueError(f"FastDropoutRNN takes no {key}= (sampled dropout; received "
                             f"{key}={kwargs[key]!r}): its dropout rates are rate= and "
                             "recurrent_rate=.")
        super().__init__(**inherited_arguments(
            locals(), "rate", "recurrent_rate", "moments", "quadrature_points", "return_variance",
            "inference"), **kwargs)
        self._set_fast_dropout_args(rate, moments, quadrature_points, return_variance, inference)
        self._recurrent_rate_arg = recurrent_rate
        self.recurrent_rate = (
            self.rate if recurrent_rate is None else check_rate("recurrent_rate", recurrent_rate)
        )
        local = [p for p in self.perturbations if p.sampling == "local"]
        if local:
            raise ValueError("FastDropoutRNN takes perturbations with sampling='weight' only; "
                             f"received {local[0]!r}: local noise depends on sampled incoming "
                             "units, which fast dropout never samples (it propagates their mean "
                             "and variance).")

    def _paired_outputs(self):
        return ("variance",) if self.return_variance else ()

    def call(self, sequences, initial_state=None, mask=None, training=None):
        if initial_state is not None:
            nested = isinstance(initial_state, (list, tuple))
            states = list(initial_state) if nested else [initial_state]
            if len(states) not in (1, 2):
                raise ValueError("FastDropoutRNN: initial_state is h0 or [h0_mean, h0_variance]; "
                                 f"received {len(states)} tensors.")
            initial_state = states if len(states) == 2 else [states[0], ops.zeros_like(states[0])]
        return super().call(sequences, initial_state=initial_state, mask=mask, training=training)

    def _project(self, x_tm, kernel, training):
        """``x W`` for every timestep, and when moments are propagated the input part of the
        variance ``((1 − p)/p) x² W²`` appended on the last axis (T, B, 2 units)."""
        mean = ops.matmul(x_tm, kernel)
        if not self._propagates_moments(training):
            return mean
        keep = 1.0 - self.rate
        variance = ops.matmul(ops.square(x_tm), ops.square(kernel)) * ((1.0 - keep) / keep)
        return ops.concatenate([mean, variance], axis=-1)

    def _split_bias(self, bias):
        return None, bias  # added to the mean inside the step (the projection may hold both)

    def _step_function(self):
        return self._moments_step

    def _moments_step(self, projected, h_in, u, carry, recurrent_bias, noise):
        mean, variance = carry
        if projected.shape[-1] == 2 * self.units:  # moments (see _project)
            input_mean, input_variance = projected[..., : self.units], projected[..., self.units :]
        else:  # the mean network
            input_mean, input_variance = projected, None
        if recurrent_bias is not None:
            input_mean = input_mean + recurrent_bias
        if input_variance is None:
            h = self.activation(input_mean + ops.matmul(mean, u))
            return [h, ops.zeros_like(h)]
        keep = 1.0 - self.recurrent_rate
        recurrent_mean, recurrent_variance = dropout_moments(mean, variance, u, keep)
        return list(self._moments(input_mean + recurrent_mean, input_variance + recurrent_variance))

    def get_config(self):
        drop = ("dropout", "recurrent_dropout")  # fast dropout's rates are rate= & co.
        config = {k: v for k, v in super().get_config().items() if k not in drop}
        return {**config, **self._fast_dropout_config(), "recurrent_rate": self._recurrent_rate_arg}


@serializable
class FastDropoutDense(_FastDropoutArgs, keras.layers.Layer):
    """Fast-dropout output layer: y = f(z W + b) with dropout on z, integrated out in training.

    Input: ``[mean, variance]`` (``FastDropoutRNN(return_variance=True)``) or one deterministic
    tensor, rank ≥ 2. In training the output is E[f(a)] (``E[a_k]``, ``Var[a_k]`` of the module
    docstring), and with ``return_variance=True`` also Var[f(a)]; inference as the RNN's. With
    ``activation="linear"`` the mean is unaffected by the noise: train a regression head with
    ``return_variance=True`` and a loss adding the variance ((y − m)² + v).

    Args:
        units, rate, activation ("sigmoid" default, "tanh", "linear"), use_bias, initializers,
        regularizers, constraints, moments, quadrature_points, return_variance, inference: as
        :class:`FastDropoutRNN`.
    """

    def __init__(self, units, rate=0.5, activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, moments="quadrature", quadrature_points=16,
                 return_variance=False, *, inference="mean", **kwargs):
        args = locals()
        super().__init__(**kwargs)
        self.units = check_int("units", units)
        self.activation_name = _check_activation(activation)
        self.activation = _activation_fn(self.activation_name)
        self.use_bias = bool(use_bias)
        for kind, (get, _) in _WEIGHT_ARGUMENTS.items():
            for weight in ("kernel", "bias"):
                setattr(self, f"{weight}_{kind}", get(args[f"{weight}_{kind}"]))
        self._set_fast_dropout_args(rate, moments, quadrature_points, return_variance, inference)
        self.supports_masking = True

    @staticmethod
    def _features_shape(input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(
                input_shape[0], (list, tuple)):
            return tuple(input_shape[0])  # [mean, variance]
        return tuple(input_shape)

    def build(self, input_shape):
        input_shape = self._features_shape(input_shape)
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError("FastDropoutDense expects inputs of rank >= 2 with a known last "
                             f"axis; received shape {input_shape}.")
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), name="kernel",
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None if not self.use_bias else self.add_weight(
            shape=(self.units,), name="bias", initializer=self.bias_initializer,
            regularizer=self.bias_regularizer, constraint=self.bias_constraint,
        )

    def compute_output_shape(self, input_shape):
        shape = self._features_shape(input_shape)[:-1] + (self.units,)
        return (shape, shape) if self.return_variance else shape

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        return [mask, mask] if self.return_variance else mask

    def call(self, inputs, training=None):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 2:
                raise ValueError("FastDropoutDense takes a tensor or [mean, variance]; received "
                                 f"{len(inputs)} tensors.")
            mean, variance = inputs
        else:
            mean, variance = inputs, None
        dtype = self.compute_dtype
        mean = ops.cast(mean, dtype)
        kernel = ops.convert_to_tensor(self.kernel)
        bias = None if self.bias is None else ops.convert_to_tensor(self.bias)
        if self._propagates_moments(training):
            variance = None if variance is None else ops.cast(variance, dtype)
            a_mean, a_var = dropout_moments(mean, variance, kernel, 1.0 - self.rate)
            out, out_var = self._moments(a_mean if bias is None else a_mean + bias, a_var)
        else:
            a_mean = ops.matmul(mean, kernel)
            out = self.activation(a_mean if bias is None else a_mean + bias)
            out_var = ops.zeros_like(out)
        return [out, out_var] if self.return_variance else out

    def get_config(self):
        weights = {f"{w}_{kind}": serialize(getattr(self, f"{w}_{kind}"))
                   for kind, (_, serialize) in _WEIGHT_ARGUMENTS.items()
                   for w in ("kernel", "bias")}
        return {**super().get_config(), "units": self.units, "activation": self.activation_name,
                "use_bias": self.use_bias, **weights, **self._fast_dropout_config()}


__all__ = ["ACTIVATIONS", "FastDropoutDense", "FastDropoutRNN", "INFERENCE", "MOMENTS",
           "dropout_moments", "gaussian_moments", "hermite_gauss"]
