"""Graph code of the zoo: a resolved configuration (:mod:`~keras_rnnreg.zoo.schema`) -> a
compiled ``keras.Model`` (the task's inputs, ``model.layers`` recurrent layers of
``schema.CELLS[model.cell]``, a ``Dense`` or ``FastDropoutDense`` head; the task's loss and
metrics); nothing here knows about a paper (the presets are data).
"""

import copy

import keras

from keras_rnnreg import constraints, layers, perturbations
from keras_rnnreg.zoo import schema, tasks

__all__ = ["build_network", "compile_model"]


def _get(get, config):
    """``get(config)`` on a copy: the Keras object of a serialized config (``keras.optimizers.get``
    edits its argument)."""
    return get(copy.deepcopy(config))


def _penalty(reg):
    spec = reg.get("weight_penalty")
    if spec is None:
        return None
    cls = keras.regularizers.L1 if spec["kind"] == "l1" else keras.regularizers.L2
    return cls(spec["strength"])


def _perturbations(reg):
    """The perturbations the configuration sets: every ``regularization`` entry of the schema
    holding a :class:`~keras_rnnreg.perturbations.Perturbation`, in the schema's order."""
    entries = schema.SCHEMA.fields["regularization"].fields
    return [_get(node.get, reg[key]) for key, node in entries.items()
            if isinstance(node, schema.KerasObject)
            and issubclass(node.base, perturbations.Perturbation) and reg.get(key) is not None]


#: The state penalties, in the order a layer's list of them holds them.
STATE_PENALTIES = ("norm_stabilizer", "activation_regularization",
                   "temporal_activation_regularization")


def _state_regularizer(reg):
    """None, the one penalty the configuration sets (passed alone, as before AR / TAR existed:
    the recorded networks stay as they were), or the list of them, each added to the loss."""
    penalties = [_get(keras.saving.deserialize_keras_object, reg[key])
                 for key in STATE_PENALTIES if reg.get(key) is not None]
    if not penalties:
        return None
    return penalties[0] if len(penalties) == 1 else penalties


def _recurrent_layer(config, index, return_sequences):
    """A layer of ``schema.CELLS[model.cell]`` with the arguments the configuration sets."""
    m, reg = config["model"], config["regularization"]
    cls = schema.CELLS[m["cell"]]
    penalty, limit = _penalty(reg), reg.get("spectral_radius_limit")
    constraint = None if limit is None else constraints.SpectralRadiusLimit(limit)
    kwargs = dict(activation=m["activation"],  # relu / trec on LSTM / GRU: refused by validate
                  kernel_initializer=_get(keras.initializers.get, m["kernel_init"]),
                  recurrent_initializer=_get(keras.initializers.get, m["recurrent_init"]),
                  bias_initializer=keras.initializers.Constant(m["bias_init"]),
                  kernel_regularizer=penalty, recurrent_regularizer=penalty,
                  recurrent_constraint=constraint, return_sequences=return_sequences,
                  name=f"recurrent_{index}", perturbations=_perturbations(reg),
                  state_regularizer=_state_regularizer(reg))
    zo = reg.get("zoneout")
    if zo is not None:  # not with fast dropout; a cell rate only on an LSTM (schema.validate)
        kwargs["zoneout"] = (zo["cell"], zo["hidden"]) if issubclass(cls, layers.LSTM) \
            else zo["hidden"]
    if issubclass(cls, layers.LSTM):
        kwargs["output_activation"] = "same" if m["lstm_output_tanh"] else None
    if issubclass(cls, layers.FastDropoutRNN):
        fd = reg["fast_dropout"]  # present: schema.validate checks it
        kwargs.update(rate=fd["input_rate"], recurrent_rate=fd["recurrent_rate"],
                      moments=fd["moments"], inference=fd["inference"], return_variance=True)
    return cls(m["units"], **kwargs)


def build_network(config):
    """The uncompiled ``keras.Model`` of a resolved configuration."""
    m, reg = config["model"], config["regularization"]
    fast = issubclass(schema.CELLS[m["cell"]], layers.FastDropoutRNN)
    inputs, x = tasks.get(config).inputs(config)
    for i in range(m["layers"]):
        last = i == m["layers"] - 1
        return_sequences = not (last and m["readout"] == "last")
        layer = _recurrent_layer(config, i, return_sequences)
        if m["bidirectional"]:  # not with fast dropout (schema.validate); one cuDNN call
            layer = layers.Bidirectional(layer, name=f"bidirectional_{i}")
        x, variance = layer(x) if fast else (layer(x), None)
        if reg["dropout"] > 0 and not fast:
            x = keras.layers.Dropout(reg["dropout"], name=f"dropout_{i}")(x)
    head = dict(kernel_initializer=_get(keras.initializers.get, m["output_init"]),
                bias_initializer=keras.initializers.Constant(m["bias_init"]),
                kernel_regularizer=_penalty(reg), name="output")
    if fast:
        fd = reg["fast_dropout"]
        outputs = layers.FastDropoutDense(
            m["output_dim"], rate=fd["output_rate"], activation=m["output_activation"],
            moments=fd["moments"], inference=fd["inference"], **head)([x, variance])
    else:
        outputs = keras.layers.Dense(m["output_dim"], activation=m["output_activation"], **head)(x)
    return keras.Model(inputs, outputs, name=config["name"] or "rnnreg")


def compile_model(model, config):
    """``model`` compiled with the configuration's optimizer and its task's loss and metrics."""
    model.compile(optimizer=_get(keras.optimizers.get, config["optimizer"]),
                  **tasks.get(config).compile_args(config))
    return model
