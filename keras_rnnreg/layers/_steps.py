"""The recurrences: one pure step function per cell type (run by the layers' scan, the cells and
the forward loops below: one copy of each equation), the registry :data:`RECURRENCES` (a layer's
or cell's ``_kind`` -> step, bias split, loop with a hand-written backward), and those loops.

A step is ``step(config, projected, h_in, u, carry, recurrent_bias=None, noise=None) ->
(new_carry, saved)``: ``projected = x_t W + b_in``, ``h_in`` the h that the recurrent matmul reads
(recurrent dropout applied), ``u`` this step's recurrent kernel, ``carry`` ``[h]`` or ``[h, c]``,
``noise(h)`` the local reparameterization's noise on ``h U`` (or None), ``config`` a
:class:`StepConfig`; ``saved``: what a hand-written backward pass reads.

Hand-written backward: autodiff through ``keras.ops.scan`` computes ``Σ_t h_{t-1}ᵀ δ_t`` inside
the reverse loop, one small matmul per step. Here the forward loop emits only the states (and
``saved``); the reverse loop does only what is sequential (``δ_{t-1} = (δ_t ⊙ f'(·)) Uᵀ``, the
LSTM's cell carry) and the kernel gradient is one matmul ``S_prevᵀ δ``. Activations covered:
those whose derivative is a function of their output (tanh, sigmoid, relu, trec, linear); else
autodiff (``base.plan_call`` decides).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from keras import ops

from keras_rnnreg._backend import scan_states

# The backends where the hand-written backward pass beats autodiff through the scan, measured on
# CPU (docs/benchmarks.md, "Hand-written backward or autodiff"). It needs the projection made
# before the loop, so where base.PROJECT_IN_LOOP puts it inside, autodiff runs instead.
FASTER_THAN_AUTODIFF = {"simple_rnn": ("jax", "torch"), "lstm": ("jax", "torch"), "gru": ("torch",)}


class StepConfig(NamedTuple):
    """What a step reads besides its tensors: the activations (callables), the GRU's
    ``reset_after``, and in ``params`` the tensors of a step with weights of its own."""

    activation: Callable
    recurrent_activation: Callable = None
    output_activation: Callable = None  # the LSTM's g_out; None: h = o ⊙ c
    reset_after: bool = True
    params: tuple = ()


def step_config(owner):  # a layer or a cell: they name their settings alike
    return StepConfig(
        owner.activation, getattr(owner, "recurrent_activation", None),
        getattr(owner, "output_activation", None), getattr(owner, "reset_after", True),
    )


class StepWeights(NamedTuple):
    """A call's weights, drawn before the loop (``FusedRNN._weights``): kernels (rows, cols), or
    (T, rows, cols) under a per-timestep perturbation (``per_timestep_*``); ``bias`` as stored
    (for cuDNN) and split (projection, step); the local perturbations, not applied."""

    kernel: Any
    recurrent_kernel: Any
    bias: Any
    input_bias: Any
    recurrent_bias: Any
    input_local: Any = None
    recurrent_local: Any = None
    per_timestep_kernel: bool = False
    per_timestep_recurrent: bool = False


def _recurrent(h, u, noise=None):
    """``h U`` (+ the local reparameterization's pre-activation noise ``noise(h)``)."""
    recurrent = ops.matmul(h, u)
    return recurrent if noise is None else recurrent + noise(h)


def simple_rnn_step(config, projected, h_in, u, carry, recurrent_bias=None, noise=None):
    """``h_t = f(x_t W + b + h_{t-1} U)``."""
    return [config.activation(projected + _recurrent(h_in, u, noise))], ()


def lstm_step(config, projected, h_in, u, carry, recurrent_bias=None, noise=None):
    """``z = x_t W + b + h_{t-1} U`` in blocks (i, f, c, o); ``c_t = σ(z_f) c_{t-1} + σ(z_i)
    g(z_c)``, ``h_t = σ(z_o) g_out(c_t)``; saves the activated gates (i, f, g, o)."""
    sigma = config.recurrent_activation
    zi, zf, zc, zo = ops.split(projected + _recurrent(h_in, u, noise), 4, axis=-1)
    i, f, g, o = sigma(zi), sigma(zf), config.activation(zc), sigma(zo)
    c = f * carry[1] + i * g
    h = o * c if config.output_activation is None else o * config.output_activation(c)
    return [h, c], (i, f, g, o)


def gru_step(config, projected, h_in, u, carry, recurrent_bias=None, noise=None):
    """Keras' GRU (gates z, r, h): ``reset_after=True`` ``a = h_{t-1} U + b_rec``,
    ``h̃ = g(x W_h + b_h + r ⊙ a_h)``; ``False`` ``h̃ = g(x W_h + b_h + (r ⊙ h_{t-1}) U_h)``;
    ``h_t = z ⊙ h_{t-1} + (1 − z) ⊙ h̃``. Saves (z, r, h̃, a_h) (``reset_after=True``)."""
    sigma = config.recurrent_activation
    xz, xr, xh = ops.split(projected, 3, axis=-1)
    if config.reset_after:
        a = _recurrent(h_in, u, noise)
        if recurrent_bias is not None:
            a = a + recurrent_bias
        az, ar, ah = ops.split(a, 3, axis=-1)
        z, r = sigma(xz + az), sigma(xr + ar)
        candidate = config.activation(xh + r * ah)
    else:
        zr = 2 * (u.shape[-1] // 3)
        a = ops.matmul(h_in, u[..., :zr])
        if noise is not None:
            a = a + noise(h_in)[..., :zr]
        az, ar = ops.split(a, 2, axis=-1)
        z, r = sigma(xz + az), sigma(xr + ar)
        reset = r * h_in
        ah = ops.matmul(reset, u[..., zr:])
        if noise is not None:
            # Local reparameterization: the noise that U_h's perturbation induces on
            # (r ⊙ h) U_h, from the columns of this step's draw that the z, r blocks left.
            ah = ah + noise(reset)[..., zr:]
        candidate = config.activation(xh + ah)
    return [z * carry[0] + (1.0 - z) * candidate], (z, r, candidate, ah)


def input_bias_only(config, bias):  # (added to the projection before the loop, by the step)
    return bias, None


def gru_split_bias(config, bias):
    """``reset_after=True`` stores (2, 3·units): row 0 the input bias, row 1 the recurrent one."""
    return (bias, None) if bias is None or not config.reset_after else (bias[0], bias[1])


# name -> (function, derivative expressed through the function's output)
_ACTIVATIONS = {
    "tanh": (ops.tanh, lambda y: 1.0 - y * y),
    "sigmoid": (ops.sigmoid, lambda y: y * (1.0 - y)),
    "relu": (ops.relu, lambda y: ops.cast(y > 0, y.dtype)),
    "trec": (ops.relu, lambda y: ops.cast(y > 0, y.dtype)),
    "linear": (lambda x: x, lambda y: ops.ones_like(y)),
}


def covered(name):
    """Whether the hand-written backward passes cover the activation ``name``."""
    return name is None or (isinstance(name, str) and name in _ACTIVATIONS)


def _act(name):
    return _ACTIVATIONS["linear" if name is None else name]


def _config(names):  # the hand-written loops' StepConfig: the activations ``names`` as ops
    return StepConfig(*(_act(name)[0] for name in names))


def _kernel_grad(s_prev, dz, u, per_timestep):  # from all timesteps at once
    if per_timestep:  # per-timestep kernels: (T, N, B) @ (T, B, G)
        return ops.matmul(ops.transpose(s_prev, (0, 2, 1)), dz)
    n, g = u.shape[-2], u.shape[-1]
    return ops.matmul(ops.transpose(ops.reshape(s_prev, (-1, n))), ops.reshape(dz, (-1, g)))


def _shift(seq, first):  # the previous-state sequence: ``first`` then ``seq[:-1]``
    return ops.concatenate([ops.expand_dims(first, 0), seq[:-1]], axis=0)


def _transposed(u):
    """``Uᵀ`` (or per-step ``U_tᵀ``), formed once before a loop: a transpose inside the loop body
    is re-done every step (measured 2x slower backward loop on JAX/XLA CPU)."""
    return ops.swapaxes(u, -1, -2)


def _step_xs(inputs, u, gates, per_timestep):
    xs = dict(inputs)
    if per_timestep:
        xs["u"] = u
    xs.update({f"a{i}": a for i, a in enumerate(gates) if a is not None})
    return xs


def update(new, old, xs):
    """``s_t = s_{t-1} + a_t ⊙ (s̃_t − s_{t-1})`` for each state with an update gate ``xs["a{i}"]``
    (the Keras mask times zoneout's ``1 − d_t``, ``base.FusedRNN._update_gates``), else ``s̃_t``."""
    return [n if f"a{i}" not in xs else o + xs[f"a{i}"] * (n - o)
            for i, (n, o) in enumerate(zip(new, old))]


def _split_gates(gates):
    """(the gate tensors to hand custom_gradient, a function giving the per-state list back)."""
    present = [a is not None for a in gates]

    def unpack(args):
        args = iter(args)
        return [next(args) if p else None for p in present]

    return tuple(a for a in gates if a is not None), unpack


# The loops with a hand-written backward pass, one per registered kind: ``loop(projected, u,
# states, recurrent_bias, gates, names, unroll=1, per_timestep=False)`` -> the list of state
# sequences (T, B, N); ``gates``: per state its update gate (T, B, 1 or N) of 0/1 values (the Keras
# mask and zoneout's draws), or None (always updates); ``names`` the activations' names in
# StepConfig order; ``per_timestep``: ``u`` is (T, units, width). A state that keeps its value
# (a_t = 0) hands its gradient to s_{t-1}; one that updates sends it through the step.


def simple_rnn(projected, u, states, recurrent_bias, gates, names, unroll=1, per_timestep=False):
    """State sequence of ``h_t = f(P_t + h_{t-1} U)`` with a hand-written backward pass."""
    config, dfn = _config(names), _act(names[0])[1]
    gate_args, unpack = _split_gates(gates)

    def forward(p, u, h0, *gate_args):
        (a,) = unpack(gate_args)

        def body(carry, xs):
            return update(simple_rnn_step(config, xs["p"], carry[0], xs.get("u", u), carry)[0],
                          carry, xs)

        (states,) = scan_states(body, [h0], _step_xs({"p": p}, u, [a], per_timestep),
                                unroll=unroll)

        def grad(*grad_args, upstream=None):
            # f'(z_t) from h_t = f(z_t) for all timesteps at once; where a_t = 0, h_t is the kept
            # state and the value wrong, but a_t zeroes it (gates are 0/1: base.plan_call).
            deriv = dfn(states)
            xs = {"d": grad_args[0] if upstream is None else upstream,
                  "deriv": deriv if a is None else deriv * a}
            if a is not None:
                xs["pass"] = 1.0 - a

            def back(carry, xs):
                g = xs["d"] + carry[0]
                dz = g * xs["deriv"]
                carry_prev = ops.matmul(dz, xs.get("u", ut))
                return [carry_prev + xs["pass"] * g if "pass" in xs else carry_prev, dz]

            ut = _transposed(u)
            d_carries, dz = scan_states(
                back, [ops.zeros_like(h0), ops.zeros_like(h0)], _step_xs(xs, ut, (), per_timestep),
                unroll=unroll, reverse=True,
            )
            # The carry after the first timestep's backward step is the gradient of h0.
            grads = (dz, _kernel_grad(_shift(states, h0), dz, u, per_timestep), d_carries[0])
            return grads + (None,) * len(gate_args)

        return states, grad

    return [ops.custom_gradient(forward)(projected, u, states[0], *gate_args)]


def lstm(projected, u, states, recurrent_bias, gates, names, unroll=1, per_timestep=False):
    """Hidden and cell sequences of the LSTM ``z = P_t + h_{t-1} U``, gates (i, f, c, o) as
    Keras, with a hand-written backward pass; ``gates`` (a_h, a_c)."""
    config = _config(names)
    (_, g_d), (_, s_d), (o_fn, o_d) = (_act(name) for name in names)
    gate_args, unpack = _split_gates(gates)

    def forward(p, u, h0, c0, *gate_args):
        a_h, a_c = unpack(gate_args)

        def body(carry, xs):
            h, c, _ = carry
            new, acts = lstm_step(config, xs["p"], h, xs.get("u", u), carry)
            # The activated gates ride along (as a carry slot) for the backward pass.
            return update(new, [h, c], xs) + [ops.concatenate(acts, axis=-1)]

        xs = _step_xs({"p": p}, u, (a_h, a_c), per_timestep)
        hs, cs, acts = scan_states(body, [h0, c0, ops.zeros_like(p[0])], xs, unroll=unroll)

        def grad(*grad_args, upstream=None):
            d_hs, d_cs = ops.split(grad_args[0] if upstream is None else upstream, 2, axis=-1)
            c_prev = _shift(cs, c0)
            # Everything that does not depend on the carried gradients, for all timesteps at once
            # (few ops per step: TensorFlow and PyTorch run the loop op by op). The step's
            # candidates c̃_t (the carried c_t unless a gate kept c_{t-1}) and h̃_t = o g_out(c̃_t).
            i, f, g, o = ops.split(acts, 4, axis=-1)
            oc = o_fn(cs if a_c is None else f * c_prev + i * g)
            dc_from_h, d_o = o * o_d(oc), oc * s_d(o)  # ∂h̃/∂c̃, ∂h̃/∂(pre-o)
            if a_h is not None:
                dc_from_h, d_o = dc_from_h * a_h, d_o * a_h
            xs = {"dh": d_hs, "dc": d_cs, "dc_from_h": dc_from_h, "f": f, "gates":
                  ops.concatenate([g * s_d(i), c_prev * s_d(f), i * g_d(g), d_o], axis=-1)}
            for name, a in (("h", a_h), ("c", a_c)):
                if a is not None:
                    xs[f"a_{name}"], xs[f"pass_{name}"] = a, 1.0 - a

            def back(carry, xs):
                dh = xs["dh"] + carry[0]
                dc = xs["dc"] + carry[1]
                dc_tilde = (dc * xs["a_c"] if "a_c" in xs else dc) + dh * xs["dc_from_h"]
                dz = ops.concatenate([dc_tilde, dc_tilde, dc_tilde, dh], axis=-1) * xs["gates"]
                dh_prev, dc_prev = ops.matmul(dz, xs.get("u", ut)), dc_tilde * xs["f"]
                if "pass_h" in xs:
                    dh_prev = dh_prev + xs["pass_h"] * dh
                if "pass_c" in xs:
                    dc_prev = dc_prev + xs["pass_c"] * dc
                return [dh_prev, dc_prev, dz]

            ut = _transposed(u)
            zeros = [ops.zeros_like(h0), ops.zeros_like(c0), ops.zeros_like(p[0])]
            xs = _step_xs(xs, ut, (), per_timestep)
            dhs, dcs, dz = scan_states(back, zeros, xs, unroll=unroll, reverse=True)
            grads = (dz, _kernel_grad(_shift(hs, h0), dz, u, per_timestep), dhs[0], dcs[0])
            return grads + (None,) * len(gate_args)

        return ops.concatenate([hs, cs], axis=-1), grad

    out = ops.custom_gradient(forward)(projected, u, *states, *gate_args)
    return ops.split(out, 2, axis=-1)


def gru(projected, u, states, recurrent_bias, gates, names, unroll=1, per_timestep=False):
    """Hidden sequence of Keras' GRU with ``reset_after=True`` (:func:`gru_step`) with a
    hand-written backward pass; ``recurrent_bias`` (3N,) or None."""
    config = _config(names)
    (_, g_d), (_, s_d) = (_act(name) for name in names)
    if recurrent_bias is None:
        recurrent_bias = ops.zeros((u.shape[-1],), dtype=projected.dtype)
    gate_args, unpack = _split_gates(gates)

    def forward(p, u, h0, b, *gate_args):
        (a,) = unpack(gate_args)

        def body(carry, xs):
            h, _ = carry
            new, saved = gru_step(config, xs["p"], h, xs.get("u", u), [h], b)
            # The gates and a_h ride along (as a carry slot) for the backward pass.
            return update(new, [h], xs) + [ops.concatenate(saved, axis=-1)]

        width = ops.shape(h0)[-1]
        hs, acts = scan_states(
            body, [h0, ops.zeros((ops.shape(h0)[0], 4 * width), dtype=h0.dtype)],
            _step_xs({"p": p}, u, [a], per_timestep), unroll=unroll,
        )

        def grad(*grad_args, upstream=None):
            h_prev = _shift(hs, h0)
            z, r, n, ah = ops.split(acts, 4, axis=-1)
            # Factors of the gradient g = a_t ∂L/∂h_t that reaches h̃_t, for all timesteps:
            # ∂/∂(pre-z) = g (h_{t-1} − n) σ'(z), ∂/∂(pre-n) = g (1 − z) g'(n),
            # ∂/∂(pre-r) = ∂/∂(pre-n) · a_h σ'(r), ∂/∂a_h = ∂/∂(pre-n) · r.
            dn_factor, dz_factor = (1.0 - z) * g_d(n), (h_prev - n) * s_d(z)
            if a is not None:
                dn_factor, dz_factor = dn_factor * a, dz_factor * a
            factors = ops.concatenate(
                [dz_factor, dn_factor * ah * s_d(r), dn_factor * r], axis=-1
            )
            keep = z if a is None else z * a + (1.0 - a)  # kept steps pass the gradient on
            xs = {"d": grad_args[0] if upstream is None else upstream, "factors": factors,
                  "keep": keep}

            def back(carry, xs):
                g = xs["d"] + carry[0]
                da = ops.concatenate([g, g, g], axis=-1) * xs["factors"]
                return [g * xs["keep"] + ops.matmul(da, xs.get("u", ut)), da, g]

            ut = _transposed(u)
            zeros = ops.zeros_like(h0)
            dh_prev, da, gs = scan_states(
                back, [zeros, ops.zeros_like(p[0]), zeros], _step_xs(xs, ut, (), per_timestep),
                unroll=unroll, reverse=True,
            )
            da_z, da_r, _ = ops.split(da, 3, axis=-1)
            dp = ops.concatenate([da_z, da_r, gs * dn_factor], axis=-1)
            db = ops.sum(ops.reshape(da, (-1, ops.shape(da)[-1])), axis=0)
            grads = (dp, _kernel_grad(h_prev, da, u, per_timestep), dh_prev[0], db)
            return grads + (None,) * len(gate_args)

        return hs, grad

    return [ops.custom_gradient(forward)(projected, u, states[0], recurrent_bias, *gate_args)]


class Recurrence(NamedTuple):
    """A registered cell type: its step function, how its bias splits between the projection
    and the step, and its loop with a hand-written backward pass (None: autodiff only)."""

    step: Callable
    split_bias: Callable = input_bias_only
    manual_backward: Callable = None


# A layer's or cell's ``_kind`` -> its Recurrence (FASTER_THAN_AUTODIFF and base.PROJECT_IN_LOOP
# use the same keys).
RECURRENCES = {
    "simple_rnn": Recurrence(simple_rnn_step, manual_backward=simple_rnn),
    "lstm": Recurrence(lstm_step, manual_backward=lstm),
    "gru": Recurrence(gru_step, gru_split_bias, manual_backward=gru),
}


__all__ = [
    "FASTER_THAN_AUTODIFF", "RECURRENCES", "Recurrence", "StepConfig", "StepWeights", "covered",
    "gru", "gru_step", "lstm", "lstm_step", "simple_rnn", "simple_rnn_step", "step_config",
]
