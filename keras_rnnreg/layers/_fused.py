"""Recurrences with hand-written backward passes (the fast path of the fused layers).

Autodiff through ``keras.ops.scan`` computes the weight gradient ``Σ_t h_{t-1}ᵀ δ_t`` inside the
reverse loop, one small matmul per timestep, and keeps per-step residuals. Here the forward loop
emits only the state sequence; the backward pass

1. recomputes every pre-activation at once, ``Z = P + S_prev U`` (one large matmul),
2. runs a reverse loop that does only what must be sequential (``δ_{t-1} = (δ_t ⊙ f'(·)) Uᵀ`` and,
   for the LSTM, the cell carry),
3. forms the recurrent-kernel gradient as one large matmul ``S_prevᵀ δ`` after the loop.

Only activations whose derivative is a function of their output are fused (tanh, sigmoid, relu,
trec, linear); anything else uses plain autodiff (``FusedRNN._use_fused`` decides). The recurrent
kernel may carry a time axis (T, units, width): per-timestep weight perturbations.

Masks are float (T, B, 1) tensors: masked steps carry the previous state unchanged.
"""

import keras
from keras import ops

from keras_rnnreg._backend import scan_states

# The backends where the hand-written backward pass beats autodiff through the scan, measured on
# CPU (docs/benchmarks.md, "Hand-written backward or autodiff"): TensorFlow's graph-mode autodiff
# through tf.scan is faster for every layer; on JAX the fused SimpleRNN / LSTM win and the fused
# GRU loses; on PyTorch (eager: fewer ops per step) all three win. It needs the projection made
# before the loop, so where base.PROJECT_IN_LOOP puts it inside, autodiff runs instead.
FASTER_THAN_AUTODIFF = {"simple_rnn": ("jax", "torch"), "lstm": ("jax", "torch"), "gru": ("torch",)}


def pays(layer):
    """Whether the hand-written backward pass of ``layer`` (a FASTER_THAN_AUTODIFF key) is the
    faster one on the current backend."""
    return keras.backend.backend() in FASTER_THAN_AUTODIFF[layer]

# name -> (function, derivative expressed through the function's output)
_ACTIVATIONS = {
    "tanh": (ops.tanh, lambda y: 1.0 - y * y),
    "sigmoid": (ops.sigmoid, lambda y: y * (1.0 - y)),
    "relu": (ops.relu, lambda y: ops.cast(y > 0, y.dtype)),
    "trec": (ops.relu, lambda y: ops.cast(y > 0, y.dtype)),
    "linear": (lambda x: x, lambda y: ops.ones_like(y)),
}


def fusable(name):
    """Whether an activation given by ``name`` has a fused implementation."""
    return name is None or (isinstance(name, str) and name in _ACTIVATIONS)


def _act(name):
    return _ACTIVATIONS["linear" if name is None else name]


def _recurrent(h, u):
    """``h @ u`` for (B, N) states; ``u`` may be one step's slice of a kernel sequence."""
    return ops.matmul(h, u)


def _kernel_grad(s_prev, dz, u):
    """Gradient of the recurrent kernel from all timesteps at once."""
    if len(u.shape) == 3:  # per-timestep kernels: (T, N, B) @ (T, B, G)
        return ops.matmul(ops.transpose(s_prev, (0, 2, 1)), dz)
    n, g = u.shape[-2], u.shape[-1]
    return ops.matmul(ops.transpose(ops.reshape(s_prev, (-1, n))), ops.reshape(dz, (-1, g)))


def _shift(seq, first):
    """The previous-state sequence: ``first`` then ``seq[:-1]``."""
    return ops.concatenate([ops.expand_dims(first, 0), seq[:-1]], axis=0)


def _transposed(u):
    """``Uᵀ`` (or per-step ``U_tᵀ``), formed once before a loop: a transpose inside the loop body
    is re-done every step (measured 2x slower backward loop on JAX/XLA CPU)."""
    return ops.swapaxes(u, -1, -2)


def _step_xs(inputs, u, mask):
    xs = dict(inputs)
    if len(u.shape) == 3:
        xs["u"] = u
    if mask is not None:
        xs["m"] = mask
    return xs


def simple_rnn(projected, u, h0, mask, activation="tanh", unroll=1):
    """State sequence (T, B, N) of ``h_t = f(P_t + h_{t-1} U)`` with a fused backward pass."""
    fn, dfn = _act(activation)
    has_mask = mask is not None
    args = (projected, u, h0) + ((mask,) if has_mask else ())

    def forward(*args):
        p, u, h0 = args[:3]
        m = args[3] if has_mask else None

        def body(carry, xs):
            (h,) = carry
            h_new = fn(xs["p"] + _recurrent(h, xs.get("u", u)))
            if has_mask:
                h_new = h + xs["m"] * (h_new - h)
            return [h_new]

        (states,) = scan_states(body, [h0], _step_xs({"p": p}, u, m), unroll=unroll)

        def grad(*grad_args, upstream=None):
            d_states = grad_args[0] if upstream is None else upstream
            s_prev = _shift(states, h0)

            # Everything that does not depend on the carried gradient is computed here for all
            # timesteps at once: f'(z_t) from the output h_t = f(z_t), with the mask folded in
            # (at masked steps the carried state makes that value wrong, and dz must be 0).
            deriv = dfn(states)
            xs = {"d": d_states}
            if has_mask:
                xs["deriv"] = deriv * m
                xs["pass"] = 1.0 - m  # masked steps hand the gradient to the previous state
            else:
                xs["deriv"] = deriv

            def back(carry, xs):
                g = xs["d"] + carry[0]
                dz = g * xs["deriv"]
                carry_prev = ops.matmul(dz, xs.get("u", ut))
                if has_mask:
                    carry_prev = carry_prev + xs["pass"] * g
                return [carry_prev, dz]

            ut = _transposed(u)
            d_carries, dz = scan_states(
                back,
                [ops.zeros_like(h0), ops.zeros_like(h0)],
                _step_xs(xs, ut, None),
                unroll=unroll,
                reverse=True,
            )
            # The carry after the first timestep's backward step is the gradient of h0.
            dh0 = d_carries[0]
            grads = (dz, _kernel_grad(s_prev, dz, u), dh0)
            if has_mask:
                grads += (ops.zeros_like(m),)
            return grads

        return states, grad

    return ops.custom_gradient(forward)(*args)


def lstm(projected, u, h0, c0, mask, activation="tanh", recurrent_activation="sigmoid",
         output_activation="tanh", unroll=1):
    """Hidden and cell sequences, concatenated on the last axis (T, B, 2N), of the LSTM
    ``z = P_t + h_{t-1} U``; gates (i, f, c, o) as Keras; fused backward pass."""
    g_fn, g_d = _act(activation)
    s_fn, s_d = _act(recurrent_activation)
    o_fn, o_d = _act(output_activation)
    has_mask = mask is not None
    args = (projected, u, h0, c0) + ((mask,) if has_mask else ())

    def gates(z):
        zi, zf, zc, zo = ops.split(z, 4, axis=-1)
        return s_fn(zi), s_fn(zf), g_fn(zc), s_fn(zo)

    def forward(*args):
        p, u, h0, c0 = args[:4]
        m = args[4] if has_mask else None

        def body(carry, xs):
            h, c, _ = carry
            i, f, g, o = gates(xs["p"] + _recurrent(h, xs.get("u", u)))
            c_new = f * c + i * g
            h_new = o * o_fn(c_new)
            if has_mask:
                c_new = c + xs["m"] * (c_new - c)
                h_new = h + xs["m"] * (h_new - h)
            # The activated gates ride along (as a carry slot) for the backward pass.
            acts = ops.concatenate([i, f, g, o], axis=-1)
            return [h_new, c_new, acts]

        hs, cs, acts = scan_states(
            body, [h0, c0, ops.zeros_like(p[0])], _step_xs({"p": p}, u, m), unroll=unroll
        )

        def grad(*grad_args, upstream=None):
            d_out = grad_args[0] if upstream is None else upstream
            d_hs, d_cs = ops.split(d_out, 2, axis=-1)
            h_prev = _shift(hs, h0)
            c_prev = _shift(cs, c0)

            # Everything that does not depend on the carried gradients is computed here, for all
            # timesteps at once (few ops per step: TensorFlow and PyTorch run the loop op by op).
            i, f, g, o = ops.split(acts, 4, axis=-1)
            oc = o_fn(cs)  # at masked steps cs is the carried cell: wrong, but masked out below
            dc_from_h = o * o_d(oc)
            gate_factors = ops.concatenate(
                [g * s_d(i), c_prev * s_d(f), i * g_d(g), oc * s_d(o)], axis=-1
            )
            keep_cell = f
            if has_mask:
                dc_from_h = dc_from_h * m
                gate_factors = gate_factors * m
                keep_cell = f * m + (1.0 - m)  # masked steps pass the cell gradient through
            xs = {"dh": d_hs, "dc": d_cs, "dc_from_h": dc_from_h, "gates": gate_factors,
                  "keep_cell": keep_cell}
            if has_mask:
                xs["pass"] = 1.0 - m

            def back(carry, xs):
                dh_next, dc_next, _ = carry
                dh = xs["dh"] + dh_next
                dc = xs["dc"] + dc_next + dh * xs["dc_from_h"]
                dz = ops.concatenate([dc, dc, dc, dh], axis=-1) * xs["gates"]
                dh_prev = ops.matmul(dz, xs.get("u", ut))
                if has_mask:
                    dh_prev = dh_prev + xs["pass"] * dh
                return [dh_prev, dc * xs["keep_cell"], dz]

            ut = _transposed(u)
            dhs, dcs, dz = scan_states(
                back,
                [ops.zeros_like(h0), ops.zeros_like(c0), ops.zeros_like(p[0])],
                _step_xs(xs, ut, None),
                unroll=unroll,
                reverse=True,
            )
            dh0, dc0 = dhs[0], dcs[0]
            grads = (dz, _kernel_grad(h_prev, dz, u), dh0, dc0)
            if has_mask:
                grads += (ops.zeros_like(m),)
            return grads

        return ops.concatenate([hs, cs], axis=-1), grad

    return ops.custom_gradient(forward)(*args)


def gru(projected, u, h0, recurrent_bias, mask, activation="tanh", recurrent_activation="sigmoid",
        unroll=1):
    """Hidden sequence (T, B, N) of Keras' GRU with ``reset_after=True``: ``a = h_{t-1} U + b``,
    ``z = σ(P_z + a_z)``, ``r = σ(P_r + a_r)``, ``n = g(P_h + r ⊙ a_h)``,
    ``h_t = z ⊙ h_{t-1} + (1 − z) ⊙ n``; fused backward pass. ``recurrent_bias`` is (3N,)."""
    g_fn, g_d = _act(activation)
    s_fn, s_d = _act(recurrent_activation)
    has_mask = mask is not None
    args = (projected, u, h0, recurrent_bias) + ((mask,) if has_mask else ())

    def forward(*args):
        p, u, h0, b = args[:4]
        m = args[4] if has_mask else None

        def body(carry, xs):
            h, _ = carry
            pz, pr, ph = ops.split(xs["p"], 3, axis=-1)
            a = _recurrent(h, xs.get("u", u)) + b
            az, ar, ah = ops.split(a, 3, axis=-1)
            z = s_fn(pz + az)
            r = s_fn(pr + ar)
            n = g_fn(ph + r * ah)
            h_new = z * h + (1.0 - z) * n
            if has_mask:
                h_new = h + xs["m"] * (h_new - h)
            # The gates and a_h ride along (as a carry slot) for the backward pass.
            return [h_new, ops.concatenate([z, r, n, ah], axis=-1)]

        width = ops.shape(h0)[-1]
        hs, acts = scan_states(
            body, [h0, ops.zeros((ops.shape(h0)[0], 4 * width), dtype=h0.dtype)],
            _step_xs({"p": p}, u, m), unroll=unroll,
        )

        def grad(*grad_args, upstream=None):
            d_hs = grad_args[0] if upstream is None else upstream
            h_prev = _shift(hs, h0)
            z, r, n, ah = ops.split(acts, 4, axis=-1)
            # Factors of the carried gradient g = ∂L/∂h_t, for all timesteps at once:
            # ∂/∂(pre-z) = g (h_{t-1} − n) σ'(z), ∂/∂(pre-n) = g (1 − z) g'(n),
            # ∂/∂(pre-r) = ∂/∂(pre-n) · a_h σ'(r), ∂/∂a_h = ∂/∂(pre-n) · r.
            dn_factor = (1.0 - z) * g_d(n)
            factors = ops.concatenate(
                [(h_prev - n) * s_d(z), dn_factor * ah * s_d(r), dn_factor * r], axis=-1
            )
            keep = z
            if has_mask:
                factors = factors * m
                keep = z * m + (1.0 - m)  # masked steps pass the gradient through
            xs = {"d": d_hs, "factors": factors, "keep": keep}

            def back(carry, xs):
                g = xs["d"] + carry[0]
                da = ops.concatenate([g, g, g], axis=-1) * xs["factors"]
                return [g * xs["keep"] + ops.matmul(da, xs.get("u", ut)), da, g]

            ut = _transposed(u)
            zeros = ops.zeros_like(h0)
            dh_prev, da, gs = scan_states(
                back, [zeros, ops.zeros_like(p[0]), zeros], _step_xs(xs, ut, None),
                unroll=unroll, reverse=True,
            )
            da_z, da_r, da_h = ops.split(da, 3, axis=-1)
            dpn = gs * dn_factor * (m if has_mask else 1.0)
            dp = ops.concatenate([da_z, da_r, dpn], axis=-1)
            db = ops.sum(ops.reshape(da, (-1, ops.shape(da)[-1])), axis=0)
            grads = (dp, _kernel_grad(h_prev, da, u), dh_prev[0], db)
            if has_mask:
                grads += (ops.zeros_like(m),)
            return grads

        return hs, grad

    return ops.custom_gradient(forward)(*args)


__all__ = ["FASTER_THAN_AUTODIFF", "fusable", "gru", "lstm", "pays", "simple_rnn"]
