"""The fused recurrent loop shared by SimpleRNN, LSTM, GRU and FastDropoutRNN.

Design:

* the input projection ``x_t W + b`` for every timestep is one matmul before the loop; the loop
  (``keras.ops.scan``) does only the recurrent part ``h_{t-1} U`` and the nonlinearity, except
  where :data:`PROJECT_IN_LOOP` measured an in-loop ``x_t W`` faster;
* nothing random inside the loop: dropout masks and the weight perturbations of
  :mod:`keras_rnnreg.perturbations` are drawn before it, per-timestep ones as tensors with a time
  axis that the loop reads like an input;
* penalties on the state sequence (:mod:`keras_rnnreg.regularizers`) are computed after the loop
  and added with ``add_loss`` from the layer's ``call``, never from inside the loop;
* weights are named and shaped like ``keras.layers.SimpleRNN`` / ``LSTM`` / ``GRU`` so that
  ``ours.set_weights(theirs.get_weights())`` gives the same function.
"""

import keras
from keras import ops
from keras.src.utils import tracking

from keras_rnnreg import _backend
from keras_rnnreg import activations as activations_lib
from keras_rnnreg._backend import plain_tensor, scan_states
from keras_rnnreg.layers import _cudnn
from keras_rnnreg.perturbations import kernels_for_step, split_by_target

# Where each step computes its own x_t W + b (autodiff through a scan unrolled IN_LOOP_UNROLL
# steps) instead of reading one (T, B, gates x units) projection made before the loop, by device,
# layer and backend: where it measured faster in every run (`python -m benchmarks.layers --suite
# projection`, docs/benchmarks.md). On CPUs the big projection costs more than it saves for the
# LSTM everywhere, the GRU on JAX (XLA keeps an in-loop x_t W in cache) and the SimpleRNN on
# TensorFlow (tf.scan moves its slices, and their gradients, through TensorArrays); elsewhere
# the runs disagree or the fused backward wins. GPUs: not measured yet, so before the loop.
PROJECT_IN_LOOP = {
    "cpu": {"simple_rnn": ("tensorflow",), "lstm": ("jax", "tensorflow", "torch"), "gru": ("jax",)},
    "gpu": {},
}
IN_LOOP_UNROLL = 2


class FusedRNN(keras.layers.Layer):
    """Base class of the fused recurrent layers; not used directly.

    Subclasses define ``_gates`` (how many ``units``-wide blocks the kernels have),
    ``state_size`` and ``_step``, and may override ``_bias_initializer_value``.

    Arguments, their order and defaults are those of ``keras.layers.SimpleRNN`` (the subclasses'
    are their Keras namesakes'); ours come after them, keyword-only. As in ``keras.layers.RNN``:

    * ``zero_output_for_mask=False``: a masked step outputs the previous output (zeros before
      the first valid step), ``True``: zeros; the state is carried over masked steps either way,
      and the last output is the last entry of the output sequence.
      ``keras.layers.Bidirectional`` sets it to ``return_sequences``.
    * ``stateful=True``: the final states of a batch are the initial states of the next, for a
      fixed batch size; they live in non-trainable variables (``states``, created by ``build``,
      zeroed by ``reset_state()``), part of ``variables`` (so ``fit`` / ``predict`` carry them
      on every backend) but not of ``weights`` (so ``get_weights()`` is Keras'); ``.keras``
      files keep them.

    Zoneout (Krueger et al. 2016, "Zoneout: Regularizing RNNs by Randomly Preserving Hidden
    Activations"), ``zoneout=`` keyword-only: a rate ``0 <= z < 1`` for every carried state, or
    for the LSTM a pair ``(cell_rate, hidden_rate)`` (the paper's z_c, z_h). Each step first
    computes the plain update s̃_t (the layer's usual equations from the zoned-out s_{t-1}),
    then:

    * training (the paper's zoneout update, Sec. 3, ``s_t = d_t ⊙ s_{t-1} + (1 - d_t) ⊙ s̃_t``,
      cited by section: the equation numbers were not checked against the paper): ``d_t ~
      Bernoulli(z)`` per timestep, unit and example, one independent mask per state, all drawn
      before the loop with ``seed_generator`` as (T, B, units) tensors that the loop reads like an
      input (nothing random in the scan);
    * inference: the expectation ``s_t = z s_{t-1} + (1 - z) s̃_t``, the paper's test-time rule
      (as dropout's, Sec. 3), without a draw.

    How the ambiguities were read: the LSTM's h zoneout is applied to ``h̃_t = o_t ⊙
    g_out(c̃_t)``, after the output gate and from the *un-zoned* candidate cell c̃_t (the
    paper's two LSTM zoneout equations, ``c_t = d^c_t ⊙ c_{t-1} + (1 - d^c_t) ⊙ (f_t ⊙ c_{t-1}
    + i_t ⊙ g_t)`` and ``h_t = d^h_t ⊙ h_{t-1} + (1 - d^h_t) ⊙ (o_t ⊙ tanh(f_t ⊙ c_{t-1} + i_t ⊙
    g_t))``: c and h zoned independently, each from its own candidate), and the next step reads
    the zoned c_t and h_t; the single state h of the GRU and SimpleRNN is zoned by the general
    rule after the whole update (for the GRU after its own interpolation by its gate z).
    ``recurrent_dropout`` acts on the h the recurrent matmul reads, never on the carried value
    zoneout keeps. A masked step (Keras mask) keeps its state
    whatever the draw. A zoneout layer with any rate > 0 runs the generic loop with autodiff:
    never cuDNN (``cudnn_path`` names zoneout), never the hand-written backward of
    ``layers/_fused.py``. FastDropoutRNN takes only ``zoneout=0``.
    """

    _gates = 1
    # Which recurrence this is (a key of _fused.FASTER_THAN_AUTODIFF and PROJECT_IN_LOOP).
    _kind = None
    # Whether the Keras namesake takes ``implementation`` (LSTM, GRU: a speed choice of the cell,
    # same function; accepted here and without effect) and ``use_cudnn`` (SimpleRNN takes neither).
    _keras_implementation_arg = True
    _keras_use_cudnn_arg = True

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        seed=None,
        *,
        zero_output_for_mask=False,
        perturbations=None,
        state_regularizer=None,
        use_cudnn="auto",
        zoneout=0.0,
        **kwargs,
    ):
        if self._keras_implementation_arg:
            implementation = kwargs.pop("implementation", 2)
            if implementation not in (0, 1, 2):
                raise ValueError(
                    f"Invalid value for argument implementation={implementation!r}: expected 0, "
                    "1 or 2 (Keras' legacy choice of matmuls; our fused loop computes the same "
                    "function)."
                )
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(
                f"Invalid value for argument units={units!r}: expected a positive integer."
            )
        for arg, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(
                    f"Invalid value for argument {arg}={value!r}: expected 0 <= {arg} < 1."
                )
        if not (isinstance(unroll, bool) or (isinstance(unroll, int) and unroll >= 1)):
            raise ValueError(
                f"Invalid value for argument unroll={unroll!r}: expected a bool or a positive int."
            )
        self.units = units
        self.activation_name = activation
        self.activation = activations_lib.get(activation, "activation")
        # "trec" is the *zero-bias* thresholded rectifier: the layer has no hidden bias.
        self.use_bias = bool(use_bias) and activation != "trec"
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
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
        self._check_state_regularizer()
        self.zoneout, self._zoneout_rates = self._check_zoneout(zoneout)
        self.supports_masking = True
        if self._keras_use_cudnn_arg:
            self.use_cudnn = _cudnn.check_use_cudnn(use_cudnn)
        elif _cudnn.check_use_cudnn(use_cudnn) is True:
            # "auto" / False (configs saved before the argument was dropped here) mean our loop.
            raise ValueError(
                f"{type(self).__name__}: use_cudnn=True, but {self._cudnn_config_reason()}."
            )
        if not self._defers_cudnn_check:
            self._check_use_cudnn()

    # Whether ``zoneout=`` applies (FastDropoutRNN carries a variance, which zoneout would not
    # mix as the paper's equations do: it takes only 0).
    _supports_zoneout = True

    def _check_zoneout(self, zoneout):
        """(``zoneout`` as given, normalized; the rate of each carried state in carry order).

        A number is the rate of every state; a layer with several states (the LSTM) also takes
        a pair ``(cell_rate, hidden_rate)``, the paper's notation z_c, z_h."""
        name = type(self).__name__
        multi = len(self._sequences_available) > 1
        expected = "a rate 0 <= zoneout < 1" + (
            " or a pair (cell_rate, hidden_rate) of such rates" if multi else ""
        )

        def rate(value):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(
                    f"Invalid value for argument zoneout={zoneout!r} of {name}: expected "
                    f"{expected}."
                )
            value = float(value)
            if not 0.0 <= value < 1.0:
                raise ValueError(
                    f"Invalid value for argument zoneout={zoneout!r} of {name}: expected "
                    f"{expected}."
                )
            return value

        if isinstance(zoneout, (list, tuple)):
            if not multi or len(zoneout) != 2:
                raise ValueError(
                    f"Invalid value for argument zoneout={zoneout!r} of {name}: expected "
                    f"{expected}."
                )
            cell_rate, hidden_rate = rate(zoneout[0]), rate(zoneout[1])
            normalized = (cell_rate, hidden_rate)
            rates = {"hidden": hidden_rate, "cell": cell_rate}
            rates = tuple(rates[s] for s in self._sequences_available)
        else:
            normalized = rate(zoneout)
            rates = (normalized,) * len(self._sequences_available)
        if any(rates) and not self._supports_zoneout:
            raise ValueError(
                f"Invalid value for argument zoneout={zoneout!r}: {name} does not support "
                "zoneout (expected 0)."
            )
        return normalized, rates

    @property
    def _zoneout_active(self):
        return any(getattr(self, "_zoneout_rates", ()))

    # Subclasses whose __init__ sets more attributes call _check_use_cudnn() themselves.
    _defers_cudnn_check = False

    def _check_use_cudnn(self):
        """use_cudnn=True with a configuration that excludes cuDNN raises (Keras raises too, at
        call time; the configuration is known here). On TensorFlow a layer that will run the
        cuDNN kernel opts out of XLA, as keras.layers.LSTM does (cuDNN ops do not compile)."""
        reason = _cudnn.config_reason(self, training=True)
        if self._use_cudnn is True and reason is not None:
            raise ValueError(
                f"{type(self).__name__}: use_cudnn=True, but this configuration cannot run the "
                f"cuDNN kernel: {reason}. Pass use_cudnn='auto' to run our loop instead."
            )
        # training=False: the wider set (per-timestep perturbations leave cuDNN in training only).
        if keras.backend.backend() == "tensorflow" and _cudnn.cudnn_path(self, training=False)[0]:
            self.supports_jit = False

    def _cudnn_config_reason(self, training=True):
        """Why this configuration excludes the cuDNN kernel (None when it does not)."""
        return f"{type(self).__name__} has no cuDNN path"

    @property
    def _use_cudnn(self):
        return getattr(self, "use_cudnn", False)

    # ----------------------------------------------------------------------------------- config
    @property
    def state_size(self):
        return [self.units]

    @property
    def output_size(self):
        return self.units

    @property
    def _state_regularizers(self):
        """The penalties of ``state_regularizer=`` as a list (empty, one, or several)."""
        return state_regularizer_list(self.state_regularizer)

    def _check_state_regularizer(self):
        for reg in self._state_regularizers:
            if reg.on == "cell" and "cell" not in self._sequences_available:
                raise ValueError(
                    f"state_regularizer on='cell' needs memory cells, which "
                    f"{type(self).__name__} does not have; use on='hidden'."
                )

    # Names of the carried states, in carry order ("hidden" first).
    _sequences_available = ("hidden",)

    def get_config(self):
        config = super().get_config()
        config.update(
            weight_config(self),
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            go_backwards=self.go_backwards,
            stateful=self.stateful,
            zero_output_for_mask=self.zero_output_for_mask,
            unroll=self.unroll,
            state_regularizer=_serialize_state_regularizer(self.state_regularizer),
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
        if len(sequences_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank 3 (batch, timesteps, features); "
                f"received inputs with shape {sequences_shape}."
            )
        input_dim = sequences_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"{type(self).__name__}: the last axis of the inputs (features) must be known; "
                f"received inputs with shape {sequences_shape}."
            )
        width = self._gates * self.units
        self.kernel = self.add_weight(
            shape=(input_dim, width),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=self._bias_shape(),
                name="bias",
                initializer=self._bias_initializer_value(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        if self.stateful:
            if self.states is not None:
                self.reset_state()
            else:
                if sequences_shape[0] is None:
                    raise ValueError(
                        f"{type(self).__name__}: stateful=True needs a fixed batch size (e.g. "
                        "keras.Input(batch_shape=(batch, timesteps, features))); received inputs "
                        f"with shape {sequences_shape}."
                    )
                self._create_state_variables(sequences_shape[0])

    @tracking.no_automatic_dependency_tracking
    def _create_state_variables(self, batch_size):
        # Untracked (not weights: get_weights() stays Keras'); listed in ``variables`` below.
        with keras.name_scope(self.name, caller=self):
            self.states = [
                keras.Variable(
                    ops.zeros((batch_size, size)), trainable=False, dtype=self.variable_dtype,
                    name="rnn_state",
                )
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

    def reset_states(self):
        """Alias of :meth:`reset_state` (Keras keeps both names)."""
        self.reset_state()

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

    def _bias_shape(self):
        return (self._gates * self.units,)

    def _bias_initializer_value(self):
        return self.bias_initializer

    # ------------------------------------------------------------------------------------- call
    def get_initial_state(self, batch_size):
        return [ops.zeros((batch_size, size), dtype=self.compute_dtype) for size in self.state_size]

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, length = sequences_shape[0], sequences_shape[1]
        if self.return_sequences:
            output = (batch, length, self.output_size)
        else:
            output = (batch, self.output_size)
        outputs = [output] * (1 + len(self._paired_outputs()))
        outputs += [(batch, length, self.units) for _ in self._extra_sequence_outputs()]
        if self.return_state:
            outputs += [(batch, size) for size in self.state_size]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        masks = [output_mask] * (1 + len(self._paired_outputs()))
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
        if len(sequences.shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of rank 3 (batch, timesteps, features); "
                f"received inputs with shape {tuple(sequences.shape)}."
            )
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        batch_size = ops.shape(sequences)[0]
        if self.stateful and self._expected_batch_size is not None:
            if sequences.shape[0] is not None and sequences.shape[0] != self._expected_batch_size:
                raise ValueError(
                    f"{type(self).__name__} is stateful with batch size "
                    f"{self._expected_batch_size} (the batch size it was built for); received "
                    f"inputs with batch size {sequences.shape[0]}. Rebuild the model with the "
                    "new batch size or pass stateful=False."
                )
        if initial_state is None and self.stateful:
            # A copy: PyTorch would otherwise see the variable change under its autograd graph.
            states = [ops.copy(ops.cast(s.value, self.compute_dtype)) for s in self.states]
        elif initial_state is None:
            states = self.get_initial_state(batch_size)
        else:
            if not isinstance(initial_state, (list, tuple)):
                initial_state = [initial_state]
            if len(initial_state) != len(self.state_size):
                raise ValueError(
                    f"{type(self).__name__} expects {len(self.state_size)} initial state "
                    f"tensor(s); received initial_state with {len(initial_state)}."
                )
            states = [ops.cast(s, self.compute_dtype) for s in initial_state]

        x = sequences
        if self.go_backwards:
            x = ops.flip(x, axis=1)
            if mask is not None:
                mask = ops.flip(mask, axis=1)
        if training and self.dropout > 0:
            keep = keras.random.dropout(
                ops.ones((batch_size, 1, ops.shape(x)[-1]), dtype=x.dtype),
                self.dropout,
                seed=self.seed_generator,
            )
            x = x * keep
        route = self._route(training, mask)
        time_steps = ops.shape(x)[1]

        kernel, recurrent_kernel, bias, input_local, recurrent_local = self._weights(
            training, time_steps
        )

        float_mask = None  # (T, B, 1)
        if mask is not None:
            float_mask = ops.expand_dims(ops.transpose(ops.cast(mask, x.dtype), (1, 0)), -1)

        def run_loop():
            """The state sequences (T, B, units) from our loop (fused or plain scan)."""
            # ---- The input projection for all timesteps: one matmul ((T, B, F) @ (F, G), or a
            # batched (T, B, F) @ (T, F, G) under per-timestep input-weight noise), unless each
            # step computes its own (_projects_in_loop). Time-major from here on: (T, B, ...).
            x_tm = ops.transpose(x, (1, 0, 2))
            input_bias, recurrent_bias = self._split_bias(bias)
            in_loop = input_local is None and len(kernel.shape) == 2 and self._projects_in_loop()
            if in_loop:
                projected = x_tm  # the step computes x_t W + b
            else:
                projected = self._project(x_tm, kernel, training)
                if input_local is not None:
                    factors = input_local.variance_factors(kernel)
                    normal = self._normal(ops.shape(projected))
                    projected = projected + input_local.local_noise(x_tm, factors, normal)
                if input_bias is not None:
                    projected = projected + input_bias

            recurrent_keep = None
            if training and self.recurrent_dropout > 0:
                recurrent_keep = keras.random.dropout(
                    ops.ones((batch_size, self.units), dtype=self.compute_dtype),
                    self.recurrent_dropout,
                    seed=self.seed_generator,
                )

            # Zoneout (Krueger et al. 2016, Sec. 3; FusedRNN's docstring): in training one
            # Bernoulli(z) mask per timestep, unit and example for each zoned state, drawn here,
            # before the loop, (T, B, units); at inference the expectation (no draw).
            zoneout_masks = {}
            if self._zoneout_active and training:
                shape = tuple(ops.shape(projected)[:2]) + (self.units,)
                for i, z in enumerate(self._zoneout_rates):
                    if z > 0:
                        u = keras.random.uniform(
                            shape, dtype=self.compute_dtype, seed=self.seed_generator
                        )
                        zoneout_masks[f"zoneout_{i}"] = ops.cast(u < z, self.compute_dtype)
            zoneout_rates = self._zoneout_rates if self._zoneout_active else ()

            fused = (
                recurrent_keep is None
                and recurrent_local is None
                and not in_loop
                and not self._zoneout_active  # the hand-written backward has no zoneout
            )
            if fused and self._use_fused():
                # Fast path: hand-written backward pass (layers/_fused.py).
                state_seqs = self._fused_states(
                    projected, recurrent_kernel, states, float_mask, recurrent_bias
                )
            else:
                step_inputs = {"projected": projected, **zoneout_masks}
                if float_mask is not None:
                    step_inputs["mask"] = float_mask
                if len(recurrent_kernel.shape) == 3:
                    step_inputs["recurrent_kernel"] = recurrent_kernel
                if recurrent_local is not None:
                    local_factors = recurrent_local.variance_factors(recurrent_kernel)
                    step_inputs["local_normal"] = self._normal(
                        tuple(ops.shape(projected)[:2]) + (recurrent_kernel.shape[-1],)
                    )

                def body(carry, inputs):
                    u = inputs.get("recurrent_kernel", recurrent_kernel)
                    if in_loop:
                        inputs = dict(inputs, projected=ops.matmul(inputs["projected"], kernel))
                        if input_bias is not None:
                            inputs["projected"] = inputs["projected"] + input_bias
                    h_in = carry[0] if recurrent_keep is None else carry[0] * recurrent_keep
                    noise = None
                    if recurrent_local is not None:

                        def noise(h):
                            return recurrent_local.local_noise(
                                h, local_factors, inputs["local_normal"]
                            )

                    new_carry = self._recurrent_step(
                        inputs["projected"], h_in, u, carry, recurrent_bias, noise
                    )
                    if zoneout_rates:
                        new_carry = _zone_out(new_carry, carry, zoneout_rates, inputs, training)
                    if "mask" in inputs:  # masked steps keep the previous state
                        m = inputs["mask"]
                        new_carry = [o + m * (n - o) for n, o in zip(new_carry, carry)]
                    # The loop emits the carried states; outputs are formed after the loop.
                    return new_carry

                unroll = self.unroll or (IN_LOOP_UNROLL if in_loop else 1)
                state_seqs = scan_states(body, states, step_inputs, unroll=unroll)

            return state_seqs

        if route == "loop":
            state_seqs = run_loop()
            final_states = [seq[-1] for seq in state_seqs]
        else:
            state_seqs = None
            hidden, final_states = self._cudnn_or_loop(
                route, x, states, kernel, recurrent_kernel, bias, mask, run_loop
            )

        needed = set(self._extra_sequence_outputs())
        if self.return_sequences:
            needed.update(("hidden",) + self._paired_outputs())
        needed.update(reg.on for reg in self._state_regularizers)
        ys = {}
        if state_seqs is None:  # cuDNN: the hidden (output) sequence only, batch-major
            ys["hidden"] = hidden
        for name, seq in zip(self._sequences_available, state_seqs or ()):
            if name not in needed:
                continue
            seq = self._output_sequence(seq, float_mask)
            ys[name] = ops.transpose(seq, (1, 0, 2))  # back to batch-major

        for reg in self._state_regularizers:  # each penalty its own add_loss
            seq_mask = None if mask is None else ops.cast(mask, ys[reg.on].dtype)
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

    def _route(self, training, mask):
        """"loop", "cudnn", or "cudnn_if_right_padded" (decided per batch from the mask)."""
        if self._use_cudnn is False:
            return "loop"
        taken, reason = _cudnn.cudnn_path(self, training=bool(training))
        if not taken:
            if self._use_cudnn is True:
                raise ValueError(
                    f"{type(self).__name__}: use_cudnn=True, but the cuDNN kernel cannot run: "
                    f"{reason}. Pass use_cudnn='auto' to run our loop instead."
                )
            return "loop"
        if mask is None:
            return "cudnn"
        if (
            (self.return_state or self.stateful)
            and not _backend.kernel_takes_mask()
            and len(self.state_size) > 1
        ):
            return "loop"  # the final cell state of a padded row is not in the returned sequence
        return "cudnn_if_right_padded"

    def _weights(self, training, time_steps):
        """(kernel, recurrent_kernel, bias, input_local, recurrent_local) as the step uses them.

        Plain tensors (autocast to the compute dtype under mixed precision). Everything random is
        drawn here, before the loop: weight-level perturbations replace a kernel by a perturbed
        copy, (rows, cols), or (T, rows, cols) when drawn per timestep; a local one (returned, not
        applied) adds pre-activation noise (perturbations.py). Input kernel first, then recurrent.
        """
        kernel = plain_tensor(self.kernel)
        recurrent_kernel = plain_tensor(self.recurrent_kernel)
        bias = None if self.bias is None else plain_tensor(self.bias)
        kernel, recurrent_kernel, input_local, recurrent_local = kernels_for_step(
            self.perturbations, kernel, recurrent_kernel, training, time_steps, self.seed_generator
        )
        return kernel, recurrent_kernel, bias, input_local, recurrent_local

    def _cudnn_weights(self, training):
        """(kernel, recurrent_kernel, bias) as ``call`` hands them to cuDNN: per-sequence
        perturbations drawn once. Only for configurations on the cuDNN path (no per-timestep
        draws, no local noise)."""
        return self._weights(training, None)[:3]

    def _cudnn_or_loop(self, route, x, states, kernel, recurrent_kernel, bias, mask, run_loop):
        """(hidden sequence (B, T, units), final states) from Keras' cuDNN kernel, or under a mask
        that is not strictly right-padded from our loop (``ops.cond`` on the mask)."""

        def cudnn():
            hidden, *final_states = self._cudnn_run(x, states, kernel, recurrent_kernel, bias, mask)
            if mask is not None and not self.zero_output_for_mask:
                # Right padding: every padded step repeats the last valid output, h.
                padded = 1.0 - ops.expand_dims(ops.cast(mask, hidden.dtype), -1)
                hidden = hidden + padded * ops.expand_dims(final_states[0], 1)
            return (hidden, *final_states)

        def loop():
            seqs = run_loop()
            hidden = seqs[0]
            if mask is not None:
                # Built inside the branch: multiplying by the caller's float mask here breaks
                # TensorFlow's gradient of the cond (tests/layers/test_cudnn.py, graph-mode fit).
                float_mask = ops.expand_dims(ops.transpose(ops.cast(mask, x.dtype), (1, 0)), -1)
                hidden = self._output_sequence(hidden, float_mask)
            return (ops.transpose(hidden, (1, 0, 2)),) + tuple(seq[-1] for seq in seqs)

        try:
            if route == "cudnn":
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

    def _cudnn_kernel_name(self):
        """Which of Keras' backend kernels the cuDNN path calls
        (``keras.src.backend.<b>.rnn.*``)."""
        return "lstm"

    def _cudnn_run(self, x, states, kernel, recurrent_kernel, bias, mask):
        """(hidden sequence (B, T, units), *final states) from Keras' cuDNN kernel (the LSTM's
        here; the GRU overrides it)."""
        hidden, h, c = _backend.cudnn_lstm(
            x, states[0], states[1], kernel, recurrent_kernel, bias, mask=mask
        )
        # Without return_state or stateful the final cell state is never read (None where the
        # kernel cannot give it under a mask).
        return hidden, h, ops.zeros_like(h) if c is None else c

    def _project(self, x_tm, kernel, training):
        """The input part of every timestep's pre-activation, before the loop: ``x_t W`` for all
        t at once, (T, B, F) @ (F, G), or a batched (T, B, F) @ (T, F, G) under per-timestep
        input-kernel perturbations (FastDropoutRNN appends the variance part)."""
        return ops.matmul(x_tm, kernel)

    def _normal(self, shape):
        return keras.random.normal(shape, dtype=self.compute_dtype, seed=self.seed_generator)

    def _use_fused(self):
        """Whether the hand-written backward pass covers this configuration."""
        return False

    def _projects_in_loop(self):
        """Whether the steps compute ``x_t W + b`` themselves (:data:`PROJECT_IN_LOOP`); never
        where ``_project`` does more than a matmul (FastDropoutRNN's variance part)."""
        device = "gpu" if _backend.gpu_available() else "cpu"
        return (
            keras.backend.backend() in PROJECT_IN_LOOP[device].get(self._kind, ())
            and type(self)._project is FusedRNN._project
        )

    def _fused_states(self, projected, recurrent_kernel, states, float_mask, recurrent_bias=None):
        """State sequences (T, B, units) from the fused implementation."""
        raise NotImplementedError

    def _split_bias(self, bias):
        """(input bias, added to the projection before the loop; recurrent bias, added inside
        the step). The GRU with ``reset_after=True`` has both; the others only the first."""
        return bias, None

    def _recurrent_step(self, projected, h_in, u, carry, recurrent_bias, noise):
        """One timestep of the plain loop from the (recurrent-dropped) hidden state ``h_in`` and
        the step's recurrent kernel ``u``: ``recurrent = h_in U`` (+ ``noise(h_in)``, the local
        reparameterization's pre-activation noise, when given), then :meth:`_step`. The GRU
        overrides it (its candidate reads ``r ⊙ h`` or adds a recurrent bias)."""
        recurrent = ops.matmul(h_in, u)
        if noise is not None:
            recurrent = recurrent + noise(h_in)
        return self._step(projected, recurrent, carry)

    def _step(self, projected, recurrent, carry):
        """One timestep given ``projected = x_t W + b`` and ``recurrent = h_{t-1} U``.

        Returns the new carried states: ``[h]``, or ``[h, c]`` for the LSTM.
        """
        raise NotImplementedError


def _zone_out(new_carry, carry, rates, inputs, training):
    """Zoneout of each carried state (Krueger et al. 2016, Sec. 3):
    training ``s_t = d_t ⊙ s_{t-1} + (1 - d_t) ⊙ s̃_t`` with ``d_t ~ Bernoulli(z)`` (the masks
    ``inputs["zoneout_i"]``, drawn before the loop); inference the expectation
    ``s_t = z s_{t-1} + (1 - z) s̃_t`` (the paper's test-time rule, Sec. 3)."""
    out = []
    for i, (new, old, z) in enumerate(zip(new_carry, carry, rates)):
        if z > 0:
            d = inputs[f"zoneout_{i}"] if training else z
            new = new + d * (old - new)
        out.append(new)
    return out


def activation_config(layer, argument):
    """The config entry of an activation ``argument`` of ``layer``: the name it was given (or
    None), else the serialized function."""
    name = getattr(layer, f"{argument}_name")
    if name is None or isinstance(name, str):
        return name
    return activations_lib.serialize(getattr(layer, argument))


def weight_config(layer):
    """The config entries that the fused layers and the cells share (Keras' weight arguments,
    dropout, seed and our perturbations)."""
    serialize = {"initializer": keras.initializers.serialize,
                 "regularizer": keras.regularizers.serialize,
                 "constraint": keras.constraints.serialize}
    config = {"units": layer.units, "activation": activation_config(layer, "activation"),
              "use_bias": layer.use_bias}
    for kind, function in serialize.items():
        for weight in ("kernel", "recurrent", "bias"):
            config[f"{weight}_{kind}"] = function(getattr(layer, f"{weight}_{kind}"))
    return {**config, "dropout": layer.dropout, "recurrent_dropout": layer.recurrent_dropout,
            "seed": layer.seed,
            "perturbations": [keras.saving.serialize_keras_object(p) for p in layer.perturbations]}


def _deserialize_list(values, argument):
    if values is None:
        return []
    if not isinstance(values, (list, tuple)):
        values = [values]
    out = []
    for value in values:
        if isinstance(value, dict):
            value = keras.saving.deserialize_keras_object(value)
        if not hasattr(value, "applies_to"):
            raise ValueError(
                f"Invalid entry in {argument}: {value!r}; expected keras_rnnreg.perturbations "
                "objects such as WeightNoise or DropConnect."
            )
        out.append(value)
    return out


def _deserialize_one(value):
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(value)
    return value


def _check_penalty(value):
    if not (hasattr(value, "penalty") and hasattr(value, "on")):
        raise ValueError(
            f"Invalid state_regularizer entry {value!r}: expected a keras_rnnreg.regularizers "
            "penalty such as NormStabilizer, ActivationRegularization or "
            "TemporalActivationRegularization (or a list of them)."
        )
    return value


def _deserialize_state_regularizer(value):
    """None, one penalty, or a list of penalties (an empty list is None); configs deserialized."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        penalties = [_check_penalty(_deserialize_one(v)) for v in value]
        return penalties or None
    return _check_penalty(_deserialize_one(value))


def _serialize_state_regularizer(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [keras.saving.serialize_keras_object(v) for v in value]
    return keras.saving.serialize_keras_object(value)


def state_regularizer_list(value):
    """A layer's ``state_regularizer`` (None, one penalty or a list) as a list."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


__all__ = ["FusedRNN"]
