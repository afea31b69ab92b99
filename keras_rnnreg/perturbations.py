"""Weight perturbations of the noise study: Gaussian weight noise and DropConnect.

"Regularizing Recurrent Networks" (../shared/papers/noise_study.txt), Secs. 8-9: its RNN-N / NS,
MN / MNS, DO / DOS and FF models are :class:`WeightNoise` (Eqs. 11-14) and :class:`DropConnect`
objects given to a layer as ``perturbations=[...]``.

Semantics (Sec. 8.1: "the perturbation of the weight matrix is done only during the optimization
period... the original values of the weight matrices are preserved"):

* active only with ``training=True``; inference uses ``Perturbation.deterministic`` (the clean
  weights, or the expected ones); stored weights never change;
* ``per="sequence"``: one draw per training step, shared by every timestep and sequence of the
  batch; ``per="timestep"``: a fresh draw per timestep (shared by the batch), made before the loop
  as a ``(T, rows, cols)`` tensor;
* ``target``: ``"recurrent"`` (U), ``"input"`` (W: RNN-FF) or ``"both"``. Several perturbations on
  one target compose in list order.

``sampling="local"`` (per-timestep only) is the local reparameterization trick (Kingma, Salimans &
Welling 2015): for ``a_j = Σ_i h_i W̃_ij`` the weight noise is exactly ``N(0, Σ_i h_i² v_ij)``
given h, ``v = σ²`` (additive) or ``σ² W²`` (multiplicative), drawn as ``sqrt(h² @ v) ⊙ z``
independently per example (exact marginals, not shared across the batch; memory (T, B, cols)).
For DropConnect it is the Gaussian with the same moments, ``v = W² rate / (1 − rate)``.
"""

import keras
from keras import ops

from keras_rnnreg._api import check_choice, check_rate, check_real, serializable

_PER = ("timestep", "sequence")
_TARGETS = ("recurrent", "input", "both")
_SAMPLING = ("weight", "local")


class Perturbation:
    """Base class: a random transformation of a weight matrix, used in training only."""

    def __init__(self, per="timestep", target="recurrent", sampling="weight"):
        self.per = check_choice("per", per, _PER)
        self.target = check_choice("target", target, _TARGETS)
        self.sampling = check_choice("sampling", sampling, _SAMPLING)
        if sampling == "local" and per != "timestep":
            raise ValueError(f"sampling='local' needs per='timestep' (received per={per!r}): a "
                             "per-sequence draw correlates the noise of all timesteps, which "
                             "per-example pre-activation noise cannot reproduce.")

    def applies_to(self, target):
        return self.target in (target, "both")

    def perturb(self, weight, time_steps, seed_generator):
        """A perturbed copy of ``weight``: (T, rows, cols) per timestep, else (rows, cols)."""
        shape = tuple(weight.shape[-2:])
        if self.per == "timestep":
            shape = (time_steps, *shape)
        return self._apply(weight, shape, seed_generator)

    def _apply(self, weight, shape, seed_generator):
        raise NotImplementedError

    def deterministic(self, weight):
        """The weight inference uses: the clean one, or the expected one (``DropConnect``)."""
        return weight

    def variance_factors(self, weight):
        """``v`` with ``Var[noise on Σ_i h_i W̃_ij] = Σ_i h_i² v_ij``."""
        raise NotImplementedError

    def local_noise(self, inputs, variance_factors, normal):
        """Pre-activation noise ``sqrt(inputs² @ v) ⊙ normal``."""
        variance = ops.matmul(ops.square(inputs), variance_factors)
        return ops.sqrt(ops.maximum(variance, 1e-12)) * normal

    def get_config(self):
        return {"per": self.per, "target": self.target, "sampling": self.sampling}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@serializable
class WeightNoise(Perturbation):
    """Gaussian weight noise, additive ``W + σε`` (Eqs. 11, 13) or multiplicative
    ``W ⊙ (1 + σε)`` (Eqs. 12, 14), ``ε ~ N(0, 1)``.

    Args:
        stddev: σ (≥ 0); the noise study's Appendix B uses 0.01-0.09, the norm-stabilizer paper's
            TIMIT runs 0.05 (additive).
        mode: ``"additive"`` or ``"multiplicative"``.
        per: ``"timestep"`` (RNN-N, RNN-MN, RNN-FF) or ``"sequence"`` (RNN-NS, RNN-MNS).
        target: ``"recurrent"``, ``"input"`` (feed-forward noise, RNN-FF) or ``"both"``.
        sampling: ``"weight"`` (draw the weights) or ``"local"`` (module docstring).
    """

    def __init__(self, stddev, mode="additive", per="timestep", target="recurrent",
                 sampling="weight"):
        super().__init__(per=per, target=target, sampling=sampling)
        self.stddev = check_real("stddev", stddev, minimum=0.0)
        self.mode = check_choice("mode", mode, ("additive", "multiplicative"))

    def _apply(self, weight, shape, seed_generator):
        noise = keras.random.normal(shape, stddev=self.stddev, dtype=weight.dtype,
                                    seed=seed_generator)
        return weight + noise if self.mode == "additive" else weight * (1.0 + noise)

    def variance_factors(self, weight):
        if self.mode == "additive":
            return ops.full(ops.shape(weight), self.stddev**2, dtype=weight.dtype)
        return self.stddev**2 * ops.square(weight)

    def get_config(self):
        return {"stddev": self.stddev, "mode": self.mode, **super().get_config()}


@serializable
class DropConnect(Perturbation):
    """DropConnect (Wan et al. 2013; noise study Sec. 9): each weight is zeroed with probability
    ``rate``. Where the scale is restored (``scale``):

    * ``True`` (default, "inverted"): in training the kept weights are multiplied by
      1/(1 − rate), so the expected matrix is W and inference uses the clean W;
    * ``"inference"`` (classic dropout, Hinton et al. 2012; Wan et al.'s mean inference): training
      uses the unscaled masks ``W ⊙ m`` and inference the expected matrix (1 − rate) W (the same
      functions as ``True``, but the weights and their steps are 1/(1 − rate) times larger);
    * ``False``: unscaled masks in training and the clean W at inference.

    Args:
        rate: drop probability, in [0, 1).
        per: ``"timestep"`` (RNN-DO) or ``"sequence"`` (RNN-DOS).
        target: ``"recurrent"`` (the paper's use), ``"input"`` or ``"both"``.
        sampling: ``"weight"`` (Bernoulli masks) or ``"local"`` (Gaussian with the same moments).
    """

    def __init__(self, rate, per="timestep", target="recurrent", scale=True, sampling="weight"):
        super().__init__(per=per, target=target, sampling=sampling)
        self.rate = check_rate("rate", rate)
        self.scale = check_choice("scale", scale, (True, False, "inference"))
        if sampling == "local" and self.scale is not True:
            raise ValueError("DropConnect(sampling='local') needs scale=True: the unscaled masks "
                             "change the mean pre-activation, which the zero-mean local noise "
                             "does not model.")

    def _apply(self, weight, shape, seed_generator):
        draw = keras.random.uniform(shape, dtype=weight.dtype, seed=seed_generator)
        keep = ops.cast(draw >= self.rate, weight.dtype)
        if self.scale is True and self.rate > 0:
            keep = keep / (1.0 - self.rate)
        return weight * keep

    def deterministic(self, weight):
        return weight * (1.0 - self.rate) if self.scale == "inference" else weight

    def variance_factors(self, weight):
        return ops.square(weight) * (self.rate / (1.0 - self.rate))

    def get_config(self):
        return {"rate": self.rate, "scale": self.scale, **super().get_config()}


def kernels_for_step(perturbations, kernel, recurrent_kernel, training, time_steps, seed_generator):
    """``(kernel, recurrent_kernel, input_local, recurrent_local)`` as a recurrent step uses them:
    in training the kernels perturbed here (input first) and the local perturbations (returned,
    not applied); outside training each perturbation's :meth:`Perturbation.deterministic` weight.
    """
    if not training:
        for p in perturbations:
            if p.applies_to("input"):
                kernel = p.deterministic(kernel)
            if p.applies_to("recurrent"):
                recurrent_kernel = p.deterministic(recurrent_kernel)
        return kernel, recurrent_kernel, None, None
    input_weight_level, input_local = split_by_target(perturbations, "input")
    recurrent_weight_level, recurrent_local = split_by_target(perturbations, "recurrent")
    for p in input_weight_level:
        kernel = p.perturb(kernel, time_steps, seed_generator)
    for p in recurrent_weight_level:
        recurrent_kernel = p.perturb(recurrent_kernel, time_steps, seed_generator)
    return kernel, recurrent_kernel, input_local, recurrent_local


def split_by_target(perturbations, target):
    """The weight-level perturbations and the (at most one) local one acting on ``target``."""
    chosen = [p for p in perturbations if p.applies_to(target)]
    local = [p for p in chosen if p.sampling == "local"]
    if local and len(chosen) > 1:
        raise ValueError("A perturbation with sampling='local' must be the only one on the "
                         f"{target} kernel; received {chosen}.")
    return [p for p in chosen if p.sampling == "weight"], (local[0] if local else None)
