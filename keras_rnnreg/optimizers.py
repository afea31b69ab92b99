"""The noise study's optimizer: RMSprop as climin computes it.

The noise study's "rmsprop" with a "step rate", a "momentum" and a decay (Appendix B, Table 2)
is climin's (Bayer et al.'s optimizer library). It differs from ``keras.optimizers.RMSprop``:

* the mean-square accumulator starts at **1**, not 0, so early on a small gradient gives a step of
  about ``step_rate · g`` where Keras' first step is about ``step_rate · sign(g) / sqrt(1 − ρ)``
  on every weight (full-size steps that can throw a sparse, spectrally scaled init off);
* ε is 1e-8 (Keras: 1e-7; both inside the square root);
* the momentum is Nesterov's (Keras' RMSprop uses plain momentum).

climin's iteration: ``θ½ = θ − β s``, ``g = ∇f(θ½)``, ``ms ← ρ ms + (1 − ρ) g²``,
``d = α g / sqrt(ms + ε)``, ``θ ← θ½ − d``, ``s ← β s + d``. Keras takes the gradient at the
variables, so they hold the look-ahead point ``φ = θ½`` and take ``φ ← φ − d − β s_new`` (as
Keras' SGD with ``nesterov=True``); ``φ`` and climin's ``θ`` differ by one momentum step.
"""

import keras
from keras import ops

from keras_rnnreg._api import check_rate, check_real, serializable

__all__ = ["CliminRMSprop"]


@serializable
class CliminRMSprop(keras.optimizers.Optimizer):
    """RMSprop with climin's accumulator start (1), ε inside the root and Nesterov momentum.

    Args:
        learning_rate: climin's ``step_rate`` (α).
        rho: decay of the mean-square average (climin's ``decay``, 0.9 there too).
        momentum: β; 0 gives plain RMSprop with the accumulator starting at 1.
        epsilon: added to the mean square inside the square root (climin: 1e-8).
        initial_accumulator_value: the mean square's starting value (climin: 1).
        name: the optimizer's name.
        **kwargs: ``keras.optimizers.Optimizer``'s (``global_clipnorm``, ...).

    Examples:
        >>> import keras, numpy as np
        >>> from keras_rnnreg.optimizers import CliminRMSprop
        >>> weights = keras.Variable([1.0, 1.0])
        >>> optimizer = CliminRMSprop(learning_rate=0.1)
        >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.01, 1.0]), weights)])
        >>> np.round(keras.ops.convert_to_numpy(weights), 4)  # steps of about 0.1 * g at first
        array([0.9989, 0.9   ], dtype=float32)
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-8,
                 initial_accumulator_value=1.0, name="climin_rmsprop", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rho = check_rate("rho", rho)
        self.momentum = check_rate("momentum", momentum)
        self.epsilon = check_real("epsilon", epsilon, minimum=0.0)
        self.initial_accumulator_value = check_real(
            "initial_accumulator_value", initial_accumulator_value, minimum=0.0
        )

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        start = keras.initializers.Constant(self.initial_accumulator_value)
        self._mean_squares = [
            self.add_variable_from_reference(v, name="mean_square", initializer=start)
            for v in var_list
        ]
        self._steps = []
        if self.momentum > 0:
            self._steps = [self.add_variable_from_reference(v, name="step") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        lr, g = ops.cast(learning_rate, variable.dtype), ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        ms = self._mean_squares[index]
        self.assign(ms, self.rho * ms + (1.0 - self.rho) * ops.square(g))
        d = lr * g / ops.sqrt(ms + self.epsilon)
        if not self._steps:
            self.assign_sub(variable, d)
            return
        step = self._steps[index]
        self.assign(step, self.momentum * step + d)
        self.assign_sub(variable, d + self.momentum * step)

    def get_config(self):
        keys = ("rho", "momentum", "epsilon", "initial_accumulator_value")
        return {**super().get_config(), **{key: getattr(self, key) for key in keys}}
