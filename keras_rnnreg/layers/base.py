"""The recurrent loop shared by SimpleRNN, LSTM, GRU and FastDropoutRNN (:class:`FusedRNN`;
"fused": the input projection of all timesteps is one matmul before the loop).

A call is ``_prepare`` (every random draw made before the loop; the path from :func:`plan_call`),
``_run`` (Keras' cuDNN kernel, or ``keras.ops.scan`` over the step of ``_steps.RECURRENCES``) and
``_assemble`` (outputs; state penalties added with ``add_loss`` after the loop). Per-timestep
draws are tensors with a time axis that the loop reads like an input. Weights are named and
shaped like Keras': ``ours.set_weights(theirs.get_weights())`` gives the same function.
"""

from typing import Any, NamedTuple

import keras
from keras import ops

from keras_rnnreg import _backend
from keras_rnnreg import activations as activations_lib
from keras_rnnreg._api import check_int, check_rate
from keras_rnnreg._backend import plain_tensor, scan_states
from keras_rnnreg.layers import _cudnn, _steps
from keras_rnnreg.perturbations import kernels_for_step, split_by_target

# Where each step computes its own x_t W + b (autodiff through a scan unrolled IN_LOOP_UNROLL
# steps) instead of reading one projection made before the loop, by device, layer and backend:
# where it measured faster in every run (docs/benchmarks.md; `python -m benchmarks.layers --suite
# projection`): on CPUs the big projection can cost more than it saves (XLA keeps an in-loop
# x_t W in cache; tf.scan moves slices and gradients through TensorArrays). GPUs: not measured.
PROJECT_IN_LOOP = {
    "cpu": {"simple_rnn": ("tensorflow",), "lstm": ("jax", "tensorflow", "torch"), "gru": ("jax",)},
    "gpu": {},
}
IN_LOOP_UNROLL = 2


class RecurrentWeights:
    """What the fused layers and the cells share: Keras' weights ``kernel`` (F, gates·units),
    ``recurrent_kernel`` (units, gates·units) and, with ``use_bias``, ``bias`` (``_bias_shape()``,
    initialized by ``_bias_initializer_value()``), and the step's :class:`~._steps.StepConfig`."""

    _gates = 1  # how many ``units``-wide blocks the kernels have

    @property
    def output_size(self):
        return self.units

    def _bias_shape(self):
        return (self._gates * self.units,)

    def _bias_initializer_value(self):
        return self.bias_initializer

    def _step_config(self):  # a step with weights of its own adds them (StepConfig.params)
        return _steps.step_config(self)

    def _build_weights(self, input_dim):
        width = self._gates * self.units

        def add(name, weight, shape, initializer):
            return self.add_weight(
                shape=shape, name=name, initializer=initializer,
                regularizer=getattr(self, f"{weight}_regularizer"),
                constraint=getattr(self, f"{weight}_constraint"),
            )

        self.kernel = add("kernel", "kernel", (input_dim, width), self.kernel_initializer)
        self.recurrent_kernel = add("recurrent_kernel", "recurrent", (self.units, width),
                                    self.recurrent_initializer)
        self.bias = (add("bias", "bias", self._bias_shape(), self._bias_initializer_value())
                     if self.use_bias else None)


class FusedRNN(RecurrentWeights, keras.layers.Layer):
    """Base class of the fused recurrent layers; not used directly.

    Subclasses set ``_kind`` (their entry in ``_steps.RECURRENCES``: the step function), ``_gates``
    and ``_sequences_available``, and may override ``_bias_shape``, ``_bias_initializer_value``
    and, for the hand-written backward pass, ``_backward_activations``; one with a cuDNN kernel
    sets ``_cudnn_kernel`` and ``_cudnn_run``.

    Arguments, their order and defaults are those of ``keras.layers.SimpleRNN`` (the subclasses'
    are their Keras namesakes'); ours come after them, keyword-only. ``zero_output_for_mask`` and
    ``stateful`` are ``keras.layers.RNN``'s (README, "Keras compatibility": a stateful layer's
    states are non-trainable variables, in ``variables`` but not ``weights``, kept in ``.keras``
    files).

    Zoneout (Krueger et al. 2016, "Zoneout: Regularizing RNNs by Randomly Preserving Hidden
    Activations"), ``zoneout=`` keyword-only: a rate ``0 <= z < 1`` for every carried state, or
    for the LSTM a pair ``(cell_rate, hidden_rate)`` (the paper's z_c, z_h). Each step computes
    the plain update s̃_t (from the zoned-out s_{t-1}), then:

    * training (Sec. 3, ``s_t = d_t ⊙ s_{t-1} + (1 - d_t) ⊙ s̃_t``; cited by section, the
      equation numbers were not checked): ``d_t ~ Bernoulli(z)`` per timestep, unit and example,
      one mask per state, all drawn before the loop as (T, B, units) tensors;
    * inference: the expectation ``s_t = z s_{t-1} + (1 - z) s̃_t`` (the paper's test-time rule).

    How the ambiguities were read: the LSTM's h zoneout applies to ``h̃_t = o_t ⊙ g_out(c̃_t)``,
    from the *un-zoned* candidate cell c̃_t (the paper's LSTM equations, ``c_t = d^c_t ⊙ c_{t-1}
    + (1 - d^c_t) ⊙ (f_t ⊙ c_{t-1} + i_t ⊙ g_t)``, ``h_t = d^h_t ⊙ h_{t-1} + (1 - d^h_t) ⊙ (o_t
    ⊙ tanh(f_t ⊙ c_{t-1} + i_t ⊙ g_t))``: c and h zoned independently, each from its own
    candidate); the next step reads the zoned c_t and h_t; the GRU's h is zoned after its own
    interpolation by z. ``recurrent_dropout`` acts on the h the recurrent matmul reads, never on
    the value zoneout keeps. A masked step (Keras mask) keeps its state whatever the draw. A
    zoneout layer never runs cuDNN (``cudnn_path`` names zoneout); in training it keeps the
    hand-written backward of ``layers/_steps.py``. FastDropoutRNN takes only ``zoneout=0``.
    """

    # Which recurrence this is: a key of _steps.RECURRENCES (the step function),
    # _steps.FASTER_THAN_AUTODIFF and PROJECT_IN_LOOP.
    _kind = None
    # Whether the Keras namesake takes ``implementation`` (LSTM, GRU: a speed choice of the cell,
    # same function; accepted here and without effect) and ``use_cudnn`` (SimpleRNN takes neither).
    _keras_implementation_arg = True
    _keras_use_cudnn_arg = True

    def __init__(
        self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
        recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
        kernel_constraint=None, recurrent_constraint=None, bias_constraint=None, dropout=0.0,
        recurrent_dropout=0.0, return_sequences=False, return_state=False, go_backwards=False,
        stateful=False, unroll=False, seed=None, *, zero_output_for_mask=False,
        perturbations=None, state_regularizer=None, use_cudnn="auto", zoneout=0.0, **kwargs,
    ):
        implementation = kwargs.pop("implementation", 2) if self._keras_implementation_arg else 2
        if implementation not in (0, 1, 2):
            raise ValueError(
                f"Invalid value for argument implementation={implementation!r}: expected 0, "
                "1 or 2 (Keras' legacy choice of matmuls; our loop computes the same function)."
            )
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        set_weight_arguments(self, locals())
        if not (isinstance(unroll, bool) or (isinstance(unroll, int) and unroll >= 1)):
            raise ValueError(
                f"Invalid value for argument unroll={unroll!r}: expected a bool or a positive int."
            )
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.stateful = bool(stateful)
        self.states = None  # the state variables of a stateful layer (build creates them)
        self._expected_batch_size = None
        self.unroll = unroll
        self.perturbations = _deserialize_list(perturbations, "perturbations")
        for target in ("input", "recurrent"):
            split_by_target(self.perturbations, target)  # raises on an invalid combination
        self.state_regularizer = _deserialize_state_regularizer(state_regularizer)
        on_cells = any(r.on == "cell" for r in self._state_regularizers)
        if on_cells and "cell" not in self._sequences_available:
            raise ValueError(f"state_regularizer on='cell' needs memory cells, which "
                             f"{type(self).__name__} does not have; use on='hidden'.")
        self.zoneout, self._zoneout_rates = self._check_zoneout(zoneout)
        self.supports_masking = True
        if self._keras_use_cudnn_arg:
            self.use_cudnn = _cudnn.check_use_cudnn(use_cudnn)
        elif _cudnn.check_use_cudnn(use_cudnn) is True:
            # "auto" / False (configs saved before the argument was dropped here) mean our loop.
            raise ValueError(
                f"{type(self).__name__}: use_cudnn=True, but {_cudnn.no_cudnn_reason(self)}."
            )
        if not self._defers_cudnn_check:
            self._check_use_cudnn()

    _supports_zoneout = True  # FastDropoutRNN: False (zoneout would mix its variance)

    def _check_zoneout(self, zoneout):
        """(``zoneout`` normalized; the rate of each carried state in carry order): one rate for
        every state or, with several states (the LSTM), a pair ``(cell_rate, hidden_rate)``."""
        name, multi = type(self).__name__, len(self._sequences_available) > 1
        pair = " or a pair (cell_rate, hidden_rate) of such rates" if multi else ""
        invalid = ValueError(f"Invalid value for argument zoneout={zoneout!r} of {name}: "
                             f"expected a rate 0 <= zoneout < 1{pair}.")

        def rate(value):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise invalid
            return float(value)

        if isinstance(zoneout, (list, tuple)):
            if not multi or len(zoneout) != 2:
                raise invalid
            normalized = (rate(zoneout[0]), rate(zoneout[1]))
            by_name = {"cell": normalized[0], "hidden": normalized[1]}
            rates = tuple(by_name[s] for s in self._sequences_available)
        else:
            normalized = rate(zoneout)
            rates = (normalized,) * len(self._sequences_available)
        if any(rates) and not self._supports_zoneout:
            raise ValueError(f"Invalid value for argument zoneout={zoneout!r}: {name} does not "
                             "support zoneout (expected 0).")
        return normalized, rates

    # Subclasses whose __init__ sets more attributes call _check_use_cudnn() themselves.
    _defers_cudnn_check = False

    def _check_use_cudnn(self):
        """use_cudnn=True with a configuration that excludes cuDNN raises (Keras does, at call
        time). On TensorFlow a layer that will run cuDNN opts out of XLA, as keras.layers.LSTM."""
        reason = _cudnn.config_reason(self, training=True)
        if self._use_cudnn is True and reason is not None:
            raise ValueError(
                f"{type(self).__name__}: use_cudnn=True, but this configuration cannot run the "
                f"cuDNN kernel: {reason}. Pass use_cudnn='auto' to run our loop instead."
            )
        # training=False: the wider set (per-timestep perturbations leave cuDNN in training only).
        if keras.backend.backend() == "tensorflow" and _cudnn.cudnn_path(self, training=False)[0]:
            self.supports_jit = False

    @property
    def _use_cudnn(self):
        return getattr(self, "use_cudnn", False)

    # ----------------------------------------------------------------------------------- config
    @property
    def state_size(self):  # one (B, units) state per carried sequence
        return [self.units] * len(self._sequences_available)

    @property
    def _state_regularizers(self):
        return state_regularizer_list(self.state_regularizer)

    # Names of the carried states, in carry order ("hidden" first).
    _sequences_available = ("hidden",)

    def get_config(self):
        config = super().get_config()
        config.update(
            weight_config(self), return_sequences=self.return_sequences,
            return_state=self.return_state, go_backwards=self.go_backwards, stateful=self.stateful,
            zero_output_for_mask=self.zero_output_for_mask, unroll=self.unroll,
            state_regularizer=keras.saving.serialize_keras_object(self.state_regularizer),
            zoneout=list(self.zoneout) if isinstance(self.zoneout, tuple) else self.zoneout,
        )
        if self._keras_use_cudnn_arg:
            config["use_cudnn"] = self.use_cudnn
        config.pop("activity_regularizer", None)
        config["activity_regularizer"] = keras.regularizers.serialize(self.activity_regularizer)
        return config

    # ------------------------------------------------------------------------------------ build
    def build(self, sequences_shape, initial_state_shape=None):
        sequences_shape = tuple(sequences_shape)
        self._check_rank(sequences_shape)
        input_dim = sequences_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"{type(self).__name__}: the last axis of the inputs (features) must be known; "
                f"received inputs with shape {sequences_shape}."
            )
        self._build_weights(input_dim)
        if self.stateful and self.states is not None:
            self.reset_state()
        elif self.stateful:
            if sequences_shape[0] is None:
                raise ValueError(
                    f"{type(self).__name__}: stateful=True needs a fixed batch size (e.g. "
                    "keras.Input(batch_shape=(batch, timesteps, features))); received inputs "
                    f"with shape {sequences_shape}."
                )
            self._create_state_variables(sequences_shape[0])

    @_backend.no_automatic_dependency_tracking
    def _create_state_variables(self, batch_size):
        # Untracked (not weights: get_weights() stays Keras'); listed in ``variables`` below.
        with keras.name_scope(self.name, caller=self):
            self.states = [
                keras.Variable(ops.zeros((batch_size, size)), trainable=False,
                               dtype=self.variable_dtype, name="rnn_state")
                for size in self.state_size
            ]
        self._expected_batch_size = int(batch_size)

    @property
    def variables(self):
        return super().variables + list(self.states or ())

    def reset_state(self):
        """Zero the states of a stateful layer (nothing to do otherwise), as Keras' RNN."""
        for state in self.states or ():
            state.assign(ops.zeros_like(state.value))

    reset_states = reset_state  # Keras keeps both names

    def save_own_variables(self, store):
        super().save_own_variables(store)
        offset = len(store.keys())
        for i, state in enumerate(self.states or ()):
            store[f"{offset + i}"] = state

    def load_own_variables(self, store):
        states = list(self.states or ())
        n_weights = len(self._trainable_variables + self._non_trainable_variables)
        if states and len(store.keys()) == n_weights + len(states):
            super().load_own_variables({str(i): store[str(i)] for i in range(n_weights)})
            for i, state in enumerate(states):
                state.assign(store[str(n_weights + i)])
        else:  # weights only (the states stay zero, as Keras loads them), or Keras' error
            super().load_own_variables(store)

    # ------------------------------------------------------------------------------------- call
    def get_initial_state(self, batch_size):
        return [ops.zeros((batch_size, size), dtype=self.compute_dtype) for size in self.state_size]

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, length = sequences_shape[0], sequences_shape[1]
        output = (batch,) + ((length,) if self.return_sequences else ()) + (self.output_size,)
        outputs = [output] * (1 + len(self._paired_outputs()))
        outputs += [(batch, length, self.units) for _ in self._extra_sequence_outputs()]
        if self.return_state:
            outputs += [(batch, size) for size in self.state_size]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        masks = [mask if self.return_sequences else None] * (1 + len(self._paired_outputs()))
        masks += [mask for _ in self._extra_sequence_outputs()]
        masks += [None] * (len(self.state_size) if self.return_state else 0)
        return masks[0] if len(masks) == 1 else masks

    def _paired_outputs(self):
        """Names of carried states returned right after the main output and shaped like it (the
        whole sequence or its last entry): FastDropoutRNN's variance."""
        return ()

    def _extra_sequence_outputs(self):
        """Names of sequences returned after the main output (and the paired ones) whatever
        ``return_sequences`` (LSTM's memory cells)."""
        return ()

    def call(self, sequences, initial_state=None, mask=None, training=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        prepared = self._prepare(sequences, initial_state, mask, training)
        return self._assemble(prepared, *self._run(prepared))

    # ------------------------------------------------------------------------ call: prepare
    def _prepare(self, sequences, initial_state, mask, training):
        """Everything before the loop (a :class:`_Call`): checks, initial states, inputs in
        processing order with input dropout, weights drawn, the float mask, the plan."""
        self._check_inputs(sequences)
        states = self._initial_states(sequences, initial_state)
        x = sequences
        if self.go_backwards:
            x = ops.flip(x, axis=1)
            mask = None if mask is None else ops.flip(mask, axis=1)
        if training and self.dropout > 0:
            ones = ops.ones((ops.shape(x)[0], 1, ops.shape(x)[-1]), dtype=x.dtype)
            x = x * keras.random.dropout(ones, self.dropout, seed=self.seed_generator)
        weights = self._weights(training, ops.shape(x)[1])
        float_mask = None if mask is None else _time_major_mask(mask, x.dtype)
        plan = plan_call(self, training, mask, weights)
        return _Call(x, states, mask, float_mask, weights, plan, training)

    def _check_rank(self, shape):
        if len(shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank 3 (batch, timesteps, features); "
                f"received inputs with shape {tuple(shape)}."
            )

    def _check_inputs(self, sequences):
        self._check_rank(sequences.shape)
        batch, expected = sequences.shape[0], self._expected_batch_size
        if self.stateful and None not in (batch, expected) and batch != expected:
            raise ValueError(
                f"{type(self).__name__} is stateful with batch size {expected} (the batch size it "
                f"was built for); received inputs with batch size {batch}. Rebuild the model "
                "with the new batch size or pass stateful=False."
            )

    def _initial_states(self, sequences, initial_state):
        if initial_state is None and self.stateful:
            # A copy: PyTorch would otherwise see the variable change under its autograd graph.
            return [ops.copy(ops.cast(s.value, self.compute_dtype)) for s in self.states]
        if initial_state is None:
            return self.get_initial_state(ops.shape(sequences)[0])
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        if len(initial_state) != len(self.state_size):
            raise ValueError(
                f"{type(self).__name__} expects {len(self.state_size)} initial state "
                f"tensor(s); received initial_state with {len(initial_state)}."
            )
        return [ops.cast(s, self.compute_dtype) for s in initial_state]

    def _weights(self, training, time_steps):
        """The :class:`~._steps.StepWeights` of a call, every draw made here (input kernel first):
        a perturbed kernel (rows, cols), or (T, rows, cols) drawn per timestep; a local
        perturbation is kept, not applied (pre-activation noise, perturbations.py)."""
        bias = None if self.bias is None else plain_tensor(self.bias)
        kernel, recurrent_kernel, input_local, recurrent_local = kernels_for_step(
            self.perturbations, plain_tensor(self.kernel), plain_tensor(self.recurrent_kernel),
            training, time_steps, self.seed_generator,
        )
        per_timestep = [
            bool(training)
            and any(p.per == "timestep" for p in split_by_target(self.perturbations, target)[0])
            for target in ("input", "recurrent")
        ]
        return _steps.StepWeights(kernel, recurrent_kernel, bias, *self._split_bias(bias),
                                  input_local, recurrent_local, *per_timestep)

    def _cudnn_weights(self, training):  # per-sequence perturbations drawn once
        return self._weights(training, None)[:3]

    # ---------------------------------------------------------------------------- call: run
    def _run(self, call):
        """(state sequences (T, B, units) from our loop, or None; the hidden sequence
        (B, T, units) from cuDNN, or None; the final states), the path as ``call.plan`` says."""
        if call.plan.route == "loop":
            state_seqs = self._run_loop(call)
            return state_seqs, None, [seq[-1] for seq in state_seqs]
        hidden, final_states = self._cudnn_or_loop(call)
        return None, hidden, final_states

    def _run_loop(self, call):
        """The state sequences (T, B, units) from our loop: the projection (unless each step makes
        its own), then the hand-written backward's loop or the scan (autodiff)."""
        x_tm, w = ops.transpose(call.x, (1, 0, 2)), call.weights
        projected = x_tm  # projecting in the loop, the step computes x_t W + b
        if not call.plan.project_in_loop:
            projected = self._project_inputs(x_tm, w, call.training)
        if call.plan.manual_backward:
            loop = _steps.RECURRENCES[self._kind].manual_backward
            return list(loop(
                projected, w.recurrent_kernel, call.states, w.recurrent_bias,
                self._update_gates(call, projected), self._backward_activations(),
                unroll=self.unroll, per_timestep=w.per_timestep_recurrent,
            ))
        return self._scan(call, projected)

    def _project_inputs(self, x_tm, w, training):  # x_t W (+ local noise) + b_in, all t at once
        projected = self._project(x_tm, w.kernel, training)
        if w.input_local is not None:
            factors = w.input_local.variance_factors(w.kernel)
            normal = self._normal(ops.shape(projected))
            projected = projected + w.input_local.local_noise(x_tm, factors, normal)
        if w.input_bias is not None:
            projected = projected + w.input_bias
        return projected

    def _scan(self, call, projected):
        """The state sequences from the scan (autodiff through it). Its draws come first:
        the recurrent dropout mask, the zoneout masks (``_update_gates``), the local noise."""
        w = call.weights
        keep = None
        if call.training and self.recurrent_dropout > 0:
            ones = ops.ones((ops.shape(call.x)[0], self.units), dtype=self.compute_dtype)
            keep = keras.random.dropout(ones, self.recurrent_dropout, seed=self.seed_generator)
        gates = self._update_gates(call, projected)
        xs = {"projected": projected, **{f"a{i}": a for i, a in enumerate(gates) if a is not None}}
        if w.per_timestep_recurrent:
            xs["recurrent_kernel"] = w.recurrent_kernel
        factors = None
        if w.recurrent_local is not None:
            factors = w.recurrent_local.variance_factors(w.recurrent_kernel)
            xs["local_normal"] = self._normal(
                tuple(ops.shape(projected)[:2]) + (w.recurrent_kernel.shape[-1],)
            )
        unroll = self.unroll or (IN_LOOP_UNROLL if call.plan.project_in_loop else 1)
        return scan_states(self._scan_body(call, keep, factors), call.states, xs, unroll=unroll)

    def _update_gates(self, call, projected):
        """Per carried state, its update gate a_t (None: 1) of ``s_t = s_{t-1} + a_t ⊙ (s̃_t −
        s_{t-1})``: the Keras mask (masked steps keep the state) times zoneout's ``1 − d_t``,
        ``d_t ~ Bernoulli(z)`` (T, B, units) drawn here, before the loop, in training
        (``_backend.keep_mask``: z honoured to 2⁻¹⁷), or ``1 − z`` at inference
        (Krueger et al. 2016, Sec. 3; the class docstring)."""
        gates, dtype, seed = [], self.compute_dtype, self.seed_generator
        shape = tuple(ops.shape(projected)[:2])
        for z in self._zoneout_rates:  # one per carried state
            a = call.float_mask
            if z > 0 and call.training:
                keep = _backend.keep_mask(shape + (self.units,), z, dtype, seed)
                a = keep if a is None else a * keep
            elif z > 0:
                a = ops.full(shape + (1,), 1.0 - z, dtype=dtype) if a is None else a * (1.0 - z)
            gates.append(a)
        return gates

    def _scan_body(self, call, recurrent_keep, local_factors):
        """The scan's body: the layer's step on this step's slices (the projection or x_t, a
        per-timestep kernel, the local-noise draw), then the update gates."""
        w, in_loop = call.weights, call.plan.project_in_loop
        local, step = w.recurrent_local, self._step_function()

        def body(carry, inputs):
            u = inputs["recurrent_kernel"] if w.per_timestep_recurrent else w.recurrent_kernel
            projected = inputs["projected"]
            if in_loop:
                projected = ops.matmul(projected, w.kernel)
                if w.input_bias is not None:
                    projected = projected + w.input_bias
            h_in = carry[0] if recurrent_keep is None else carry[0] * recurrent_keep
            noise = None
            if local is not None:

                def noise(h):
                    return local.local_noise(h, local_factors, inputs["local_normal"])

            # The loop emits the carried states; outputs are formed after the loop.
            return _steps.update(step(projected, h_in, u, carry, w.recurrent_bias, noise),
                                 carry, inputs)

        return body

    def _cudnn_or_loop(self, call):
        """(hidden sequence (B, T, units), final states) from Keras' cuDNN kernel, or under a mask
        that is not strictly right-padded from our loop (``ops.cond`` on the mask)."""
        mask, w = call.mask, call.weights

        def cudnn():
            hidden, *final_states = self._cudnn_run(
                call.x, call.states, w.kernel, w.recurrent_kernel, w.bias, mask
            )
            if mask is not None and not self.zero_output_for_mask:
                # Right padding: every padded step repeats the last valid output, h.
                padded = 1.0 - ops.expand_dims(ops.cast(mask, hidden.dtype), -1)
                hidden = hidden + padded * ops.expand_dims(final_states[0], 1)
            return (hidden, *final_states)

        def loop():
            seqs = self._run_loop(call)
            hidden = seqs[0]
            if mask is not None:
                # Built inside the branch: multiplying by the caller's float mask here breaks
                # TensorFlow's gradient of the cond (tests/layers/test_cudnn.py, graph-mode fit).
                hidden = self._output_sequence(hidden, _time_major_mask(mask, call.x.dtype))
            return (ops.transpose(hidden, (1, 0, 2)),) + tuple(seq[-1] for seq in seqs)

        try:
            if call.plan.route == "cudnn":
                hidden, *final_states = cudnn()
            else:
                hidden, *final_states = ops.cond(_backend.right_padded(mask), cudnn, loop)
        except NotImplementedError as error:  # Keras' kernel refused (e.g. cuDNN not loadable)
            if self._use_cudnn is True:
                raise ValueError(
                    f"{type(self).__name__}: use_cudnn=True, but Keras' cuDNN kernel cannot run "
                    f"here ({error!r}). Pass use_cudnn='auto' to run our loop instead."
                ) from error
            hidden, *final_states = loop()
        return hidden, final_states

    # ----------------------------------------------------------------------- call: assemble
    def _assemble(self, call, state_seqs, hidden, final_states):
        """The layer's outputs from the state sequences (or cuDNN's hidden sequence) and the
        final states; the state penalties added; a stateful layer's states assigned."""
        float_mask = call.float_mask
        needed = set(self._extra_sequence_outputs())
        if self.return_sequences:
            needed.update(("hidden",) + self._paired_outputs())
        needed.update(reg.on for reg in self._state_regularizers)
        ys = {}
        if state_seqs is None:  # cuDNN: the hidden (output) sequence only, batch-major
            ys["hidden"] = hidden
        for name, seq in zip(self._sequences_available, state_seqs or ()):
            if name in needed:
                seq = self._output_sequence(seq, float_mask)
                ys[name] = ops.transpose(seq, (1, 0, 2))  # back to batch-major

        for reg in self._state_regularizers:  # each penalty its own add_loss
            seq_mask = None if call.mask is None else ops.cast(call.mask, ys[reg.on].dtype)
            self.add_loss(reg.penalty(ys[reg.on], mask=seq_mask))

        if self.stateful:
            for variable, state in zip(self.states, final_states):
                variable.assign(ops.cast(state, variable.dtype))

        paired = ("hidden",) + self._paired_outputs()
        if self.return_sequences:
            outputs = [ys[name] for name in paired]
        else:  # the last entry of each output sequence
            last = dict(zip(self._sequences_available, final_states))
            outputs = [last[name] for name in paired]
            if float_mask is not None:
                valid = self._output_sequence(ops.ones_like(float_mask), float_mask)[-1]
                outputs = [output * valid for output in outputs]
        outputs += [ys[name] for name in self._extra_sequence_outputs()]
        if self.return_state:
            outputs += list(final_states)
        return outputs[0] if len(outputs) == 1 else outputs

    def _output_sequence(self, seq, float_mask):
        """The outputs of Keras' RNN from the carried states ``seq`` (T, B, units), which repeat
        the last valid state over masked steps: at a masked step zeros with
        ``zero_output_for_mask``, else the previous output (zeros before the first valid step)."""
        if float_mask is None:
            return seq
        if self.zero_output_for_mask:
            return seq * float_mask
        return seq * ops.minimum(ops.cumsum(float_mask, axis=0), 1.0)

    # ---------------------------------------------------------- the hooks of the subclasses
    _cudnn_kernel = None  # which of Keras' cuDNN kernels the layer runs ("lstm", "gru")
    _no_cudnn_reason = None  # what cudnn_path says for a layer type without one

    def _cudnn_equation_reasons(self):  # the layer's own cuDNN rules (_cudnn._kernel_rules)
        return ()

    def _cudnn_output_reasons(self):
        return ()

    def _project(self, x_tm, kernel, training):
        """The input part of every timestep's pre-activation, before the loop: ``x_t W`` for all
        t at once, (T, B, F) @ (F, G), or a batched (T, B, F) @ (T, F, G) under per-timestep
        input-kernel perturbations (FastDropoutRNN appends the variance part)."""
        return ops.matmul(x_tm, kernel)

    def _normal(self, shape):
        return keras.random.normal(shape, dtype=self.compute_dtype, seed=self.seed_generator)

    def _backward_activations(self):
        """The activations' names in ``StepConfig`` order when the hand-written backward pass of
        ``_steps.RECURRENCES`` can cover this configuration, else None."""
        return None

    def _manual_backward(self):
        """Whether the hand-written backward pass covers this configuration and is the faster
        one here (``_steps.FASTER_THAN_AUTODIFF``)."""
        names = self._backward_activations()
        pays = keras.backend.backend() in _steps.FASTER_THAN_AUTODIFF.get(self._kind, ())
        return names is not None and pays and all(map(_steps.covered, names))

    def _projects_in_loop(self):
        """Whether the steps compute ``x_t W + b`` themselves (:data:`PROJECT_IN_LOOP`); never
        where ``_project`` does more than a matmul (FastDropoutRNN's variance part)."""
        device = "gpu" if _backend.gpu_available() else "cpu"
        listed = keras.backend.backend() in PROJECT_IN_LOOP[device].get(self._kind, ())
        return listed and type(self)._project is FusedRNN._project

    def _split_bias(self, bias):
        """(input bias, added to the projection before the loop; recurrent bias, added inside
        the step), as the layer's kind splits it (the GRU with ``reset_after=True`` has both)."""
        return _steps.RECURRENCES[self._kind].split_bias(self._step_config(), bias)

    def _step_function(self):
        """The scan's step, ``(projected, h_in, u, carry, recurrent_bias, noise) -> new carry``,
        made once per call: the step of the layer's kind (``_steps.RECURRENCES``) with its
        ``_step_config()``. FastDropoutRNN returns its own."""
        step, config = _steps.RECURRENCES[self._kind].step, self._step_config()
        return lambda *args: step(config, *args)[0]


def activation_config(layer, argument):
    """The config entry of an activation ``argument`` of ``layer``: the name it was given (or
    None), else the serialized function."""
    name = getattr(layer, f"{argument}_name")
    return name if name is None or isinstance(name, str) else activations_lib.serialize(
        getattr(layer, argument))


def weight_config(layer):
    """The config entries that the fused layers and the cells share (Keras' weight arguments,
    dropout, seed and our perturbations)."""
    config = {"units": layer.units, "activation": activation_config(layer, "activation"),
              "use_bias": layer.use_bias}
    for kind, (_, serialize) in _WEIGHT_ARGUMENTS.items():
        for weight in ("kernel", "recurrent", "bias"):
            config[f"{weight}_{kind}"] = serialize(getattr(layer, f"{weight}_{kind}"))
    return {**config, "dropout": layer.dropout, "recurrent_dropout": layer.recurrent_dropout,
            "seed": layer.seed,
            "perturbations": keras.saving.serialize_keras_object(layer.perturbations)}


def inherited_arguments(args, *own):
    """A subclass ``__init__``'s ``locals()`` less ``self``, ``kwargs`` and its ``own`` arguments:
    the keyword arguments it hands to ``FusedRNN.__init__``."""
    skip = {"self", "kwargs", "__class__", *own}
    return {name: value for name, value in args.items() if name not in skip}


def _deserialize_list(values, argument, required=("applies_to",),
                      expected="keras_rnnreg.perturbations objects such as WeightNoise or "
                               "DropConnect"):
    """``values`` (None, one object or several) as a list, configs deserialized, each checked."""
    out = [keras.saving.deserialize_keras_object(v) if isinstance(v, dict) else v
           for v in state_regularizer_list(values)]
    for value in out:
        if not all(hasattr(value, name) for name in required):
            raise ValueError(f"Invalid entry in {argument}: {value!r}; expected {expected}.")
    return out


def _deserialize_state_regularizer(value):
    """None, one penalty, or a list of penalties (an empty list is None); configs deserialized."""
    penalties = _deserialize_list(
        value, "state_regularizer", ("penalty", "on"), "a keras_rnnreg.regularizers penalty such "
        "as NormStabilizer, ActivationRegularization or TemporalActivationRegularization (or a "
        "list of them)")
    if isinstance(value, (list, tuple)):
        return penalties or None
    return penalties[0] if penalties else None


def state_regularizer_list(value):
    """A layer's ``state_regularizer`` (None, one penalty or a list) as a list."""
    return list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]


def _time_major_mask(mask, dtype):
    """A (B, T) mask as a float (T, B, 1) tensor."""
    return ops.expand_dims(ops.transpose(ops.cast(mask, dtype), (1, 0)), -1)


class CallPlan(NamedTuple):
    """The path of one call (:func:`plan_call`)."""

    route: str  # "loop", "cudnn", or "cudnn_if_right_padded" (decided per batch from the mask)
    project_in_loop: bool  # each step computes its own x_t W + b (PROJECT_IN_LOOP)
    manual_backward: bool  # the hand-written backward pass of _steps (FASTER_THAN_AUTODIFF)


class _Call(NamedTuple):
    """A call after ``FusedRNN._prepare``: what ``_run`` and ``_assemble`` read."""

    x: Any  # (B, T, F) in processing order, input dropout applied
    states: list
    mask: Any  # (B, T) in processing order, or None
    float_mask: Any  # (T, B, 1), or None
    weights: _steps.StepWeights
    plan: CallPlan
    training: Any


def plan_call(layer, training, mask, weights):
    """The one place a call's path is chosen: Keras' cuDNN kernel (``_cudnn.cudnn_path``, the
    mask), else our loop with the projection in or before it (:data:`PROJECT_IN_LOOP` via
    ``layer._projects_in_loop()``) and a hand-written or automatic backward (FASTER_THAN_AUTODIFF
    via ``layer._manual_backward()``), also for the loop of a "cudnn_if_right_padded" route."""
    in_loop = weights.input_local is None and not weights.per_timestep_kernel
    in_loop = in_loop and layer._projects_in_loop()
    manual = (
        not in_loop
        and weights.recurrent_local is None
        and not (training and layer.recurrent_dropout > 0)  # a mask inside the loop
        # zoneout's expectation (inference) makes fractional update gates: SimpleRNN's
        # backward reads f'(z_t) from h_t, so it takes 0/1 gates only
        and not (any(layer._zoneout_rates) and not training)
        and layer._manual_backward()
    )
    return CallPlan(_cudnn_route(layer, training, mask), in_loop, manual)


def _cudnn_route(layer, training, mask):
    if layer._use_cudnn is False:
        return "loop"
    taken, reason = _cudnn.cudnn_path(layer, training=bool(training))
    if not taken:
        if layer._use_cudnn is True:
            raise ValueError(
                f"{type(layer).__name__}: use_cudnn=True, but the cuDNN kernel cannot run: "
                f"{reason}. Pass use_cudnn='auto' to run our loop instead."
            )
        return "loop"
    if mask is None:
        return "cudnn"
    if (layer.return_state or layer.stateful) and not _backend.kernel_takes_mask() and len(
            layer.state_size) > 1:
        return "loop"  # the final cell state of a padded row is not in the returned sequence
    return "cudnn_if_right_padded"


_WEIGHT_ARGUMENTS = {
    "initializer": (keras.initializers.get, keras.initializers.serialize),
    "regularizer": (keras.regularizers.get, keras.regularizers.serialize),
    "constraint": (keras.constraints.get, keras.constraints.serialize),
}


def set_weight_arguments(owner, args):
    """Check and set the arguments that the layers and the cells share, from ``args`` (the
    ``__init__``'s ``locals()``): units, activation, use_bias, each weight's initializer,
    regularizer and constraint, dropout rates, seed."""
    units = check_int("units", args["units"])
    for arg in ("dropout", "recurrent_dropout"):
        check_rate(arg, args[arg])
    owner.units = units
    owner.activation_name = args["activation"]
    owner.activation = activations_lib.get(args["activation"], "activation")
    # "trec" is the *zero-bias* thresholded rectifier: the layer has no hidden bias.
    owner.use_bias = bool(args["use_bias"]) and args["activation"] != "trec"
    for kind, (get, _) in _WEIGHT_ARGUMENTS.items():
        for weight in ("kernel", "recurrent", "bias"):
            setattr(owner, f"{weight}_{kind}", get(args[f"{weight}_{kind}"]))
    owner.dropout = float(args["dropout"])
    owner.recurrent_dropout = float(args["recurrent_dropout"])
    owner.seed = args["seed"]
    owner.seed_generator = keras.random.SeedGenerator(args["seed"])


__all__ = ["CallPlan", "FusedRNN", "plan_call"]
