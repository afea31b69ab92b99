"""Graph code of the zoo: a resolved configuration (:mod:`~keras_rnnreg.zoo.schema`) -> a
compiled ``keras.Model``.

Nothing here knows about a particular paper; the presets are data in ``noise_study.py``,
``norm_stabilizer.py`` and ``zoneout.py``. The pieces:

* recurrent stack: ``model.layers`` layers of ``model.cell`` (SimpleRNN / LSTM / GRU /
  LayerNormLSTM / LayerNormGRU from :mod:`keras_rnnreg.layers`, or FastDropoutRNN), optionally
  ``Bidirectional``, with the perturbations, penalties (weight penalties; the state penalties
  norm-stabilizer, AR, TAR: one object, or a list when several are set), zoneout, initializers
  and constraints of ``regularization`` / ``model``;
* inputs: the task's (:meth:`keras_rnnreg.zoo.tasks.Task.inputs`);
* outputs: a ``Dense(output_dim)`` every timestep (``readout="sequence"``) or on the last state
  (``"last"``), or :class:`~keras_rnnreg.layers.FastDropoutDense` for fast dropout;
* compile: the optimizer of ``optimizer`` and the task's loss and metrics.
"""

import copy

import keras

from keras_rnnreg import constraints, layers, perturbations
from keras_rnnreg.zoo import schema, tasks

__all__ = ["build_network", "compile_model"]


# ----------------------------------------------------------------------------------- pieces
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


def _zoneout(config):
    """The layers' ``zoneout=``: (cell rate, hidden rate) for an LSTM, the hidden rate for the
    other cells (a cell rate there is refused by schema.validate); None when unset."""
    zo = config["regularization"].get("zoneout")
    if zo is None:
        return None
    if config["model"]["cell"] in ("lstm", "layer_norm_lstm"):
        return (zo["cell"], zo["hidden"])
    return zo["hidden"]


def _recurrent_layer(config, index, return_sequences):
    m, reg = config["model"], config["regularization"]
    penalty = _penalty(reg)
    constraint = (
        constraints.SpectralRadiusLimit(reg["spectral_radius_limit"])
        if reg.get("spectral_radius_limit") is not None
        else None
    )
    common = dict(kernel_initializer=_get(keras.initializers.get, m["kernel_init"]),
                  recurrent_initializer=_get(keras.initializers.get, m["recurrent_init"]),
                  bias_initializer=keras.initializers.Constant(m["bias_init"]),
                  kernel_regularizer=penalty, recurrent_regularizer=penalty,
                  recurrent_constraint=constraint, return_sequences=return_sequences,
                  name=f"recurrent_{index}")
    extra = dict(perturbations=_perturbations(reg), state_regularizer=_state_regularizer(reg))
    if _zoneout(config) is not None:  # not with fast dropout (schema.validate)
        extra["zoneout"] = _zoneout(config)
    if m["cell"] == "fast_dropout":
        fd = reg["fast_dropout"]  # present: schema.validate checks it
        return layers.FastDropoutRNN(m["units"], rate=fd["input_rate"],
                                     recurrent_rate=fd["recurrent_rate"],
                                     activation=m["activation"], moments=fd["moments"],
                                     inference=fd["inference"], return_variance=True, **common,
                                     **extra)
    if m["cell"] in ("lstm", "layer_norm_lstm"):
        cls = layers.LSTM if m["cell"] == "lstm" else layers.LayerNormLSTM
        return cls(
            m["units"],
            activation=m["activation"],  # relu / trec: refused by schema.validate
            output_activation="same" if m["lstm_output_tanh"] else None,
            **common,
            **extra,
        )
    if m["cell"] in ("gru", "layer_norm_gru"):
        cls = layers.GRU if m["cell"] == "gru" else layers.LayerNormGRU
        return cls(
            m["units"],
            activation=m["activation"],
            **common,
            **extra,
        )
    return layers.SimpleRNN(m["units"], activation=m["activation"], **common, **extra)


def build_network(config):
    """The uncompiled ``keras.Model`` of a resolved configuration."""
    m, reg = config["model"], config["regularization"]
    inputs, x = tasks.get(config).inputs(config)
    variance = None
    for i in range(m["layers"]):
        last = i == m["layers"] - 1
        return_sequences = not (last and m["readout"] == "last")
        layer = _recurrent_layer(config, i, return_sequences)
        if m["bidirectional"]:  # not with fast dropout (schema.validate)
            # One cuDNN call where it can.
            layer = layers.Bidirectional(layer, name=f"bidirectional_{i}")
        out = layer(x)
        if m["cell"] == "fast_dropout":
            x, variance = out
        else:
            x = out
        if reg["dropout"] > 0 and m["cell"] != "fast_dropout":
            x = keras.layers.Dropout(reg["dropout"], name=f"dropout_{i}")(x)
    head = dict(kernel_initializer=_get(keras.initializers.get, m["output_init"]),
                bias_initializer=keras.initializers.Constant(m["bias_init"]),
                kernel_regularizer=_penalty(reg), name="output")
    if m["cell"] == "fast_dropout":
        fd = reg["fast_dropout"]
        outputs = layers.FastDropoutDense(
            m["output_dim"], rate=fd["output_rate"], activation=m["output_activation"],
            moments=fd["moments"], inference=fd["inference"], **head,
        )([x, variance])
    else:
        outputs = keras.layers.Dense(m["output_dim"], activation=m["output_activation"], **head)(x)
    return keras.Model(inputs, outputs, name=config["name"] or "rnnreg")


def compile_model(model, config):
    """``model`` compiled with the configuration's optimizer and its task's loss and metrics."""
    model.compile(optimizer=_get(keras.optimizers.get, config["optimizer"]),
                  **tasks.get(config).compile_args(config))
    return model
