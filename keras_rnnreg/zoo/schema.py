"""The configuration schema of the zoo: the keys a preset holds that no Keras constructor checks.

A resolved configuration is a nested dict of the sections below. Its Keras objects (the
initializers ``model.*_init``, the perturbations and state regularizers of ``regularization``, the
``optimizer``) are Keras-serialized configs holding the arguments a preset gives: their
constructors are their schema, and :func:`validate` builds each one (an optimizer: checks its
signature, see :func:`_unbuilt`). The rest is declared here; a ``model`` key that configures a
layer argument takes its default from the layers' constructors (:data:`CELLS`).

Presets give only what differs from the defaults; :func:`complete` fills in the rest. Overrides
(``build(name, units=8)``, ``--set optimizer.learning_rate=0.01``) go through
:func:`apply_overrides`: a key inside a Keras object sets that constructor argument
(``model.recurrent_init.stddev`` reaches the initializer that ``SpectralRadius`` wraps,
``optimizer.class_name=Adam`` swaps the class keeping the arguments it accepts); an unambiguous bare
leaf name (``units``) works too; an error names the key, the value and what was expected. Optional
objects and sections are ``None`` when unused: setting one of their keys creates them from their
defaults, setting them to ``none`` removes them.
"""

import contextlib
import copy
import difflib
import inspect
import json
import numbers
import random
import tomllib
from dataclasses import dataclass

import keras

from keras_rnnreg import _shipped, layers, perturbations, regularizers
from keras_rnnreg._api import PACKAGE
from keras_rnnreg.zoo import tasks

__all__ = ["CELLS", "SCHEMA", "ConfigError", "Field", "KerasObject", "Section", "apply_overrides",
           "arguments", "check_table", "check_value", "complete", "describe_keys", "get_value",
           "keras_object", "load_toml", "resolve_key", "validate"]


class ConfigError(ValueError):
    """An invalid configuration key or value (a ``ValueError``)."""


class Config(dict):
    """A resolved configuration: complete, checked once (:func:`validate`), read-only.

    What :func:`keras_rnnreg.zoo.resolve` returns and ``build``, ``ZooModel``, training, cards and
    tuner jobs take without checking again: a ``dict`` with read-only sections; ``copy.deepcopy``
    gives a plain dict, ``zoo.resolve(config, overrides)`` a changed, checked ``Config``.
    """

    def __init__(self, checked):
        super().__init__({k: _freeze(v) for k, v in checked.items()})

    def __deepcopy__(self, memo):
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self):  # copy.copy and pickle: another Config of the same (checked) content
        return Config, (dict(self),)

    def _read_only(self, *args, **kwargs):
        raise TypeError("a resolved configuration is read-only; zoo.resolve(config, overrides) "
                        "(or copy.deepcopy for a plain dict) makes a changed one")

    __setitem__ = __delitem__ = __ior__ = update = pop = popitem = setdefault = clear = _read_only


def _freeze(value):
    return Config(value) if isinstance(value, dict) and not isinstance(value, Config) else value


@contextlib.contextmanager
def _no_draws():
    """Keep Python's global random state: an unseeded Keras initializer draws its seed from it
    when constructed, and checking a config must not change the weights a seeded run builds."""
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)


def _unbuilt(cls):
    """Keras optimizers are checked against their signature, never built, when a configuration is
    made or checked: building one makes backend variables, which on TensorFlow starts the runtime,
    and a multi-worker strategy must be set up before that (:mod:`keras_rnnreg.distribute`)."""
    return isinstance(cls, type) and issubclass(cls, keras.optimizers.Optimizer)


def _optimizer_class(name):
    """Ours (``CliminRMSprop``) or Keras' (``RMSprop``, ``adam``) optimizer class, else None."""
    name = str(name)
    registered = keras.saving.get_registered_object(name if ">" in name else f"{PACKAGE}>{name}")
    if registered is not None:
        return registered
    public = {k.lower(): v for k, v in vars(keras.optimizers).items() if _unbuilt(v)}
    return public.get(name.lower())


def _named_arguments(cls):
    """``{name: default}`` of the named arguments of ``cls`` and the classes its ``**kwargs``
    reach (an optimizer's base class); required ones map to ``inspect.Parameter.empty``."""
    out = {}
    for klass in cls.__mro__[:-1]:  # not object
        if "__init__" in vars(klass):
            for name, p in inspect.signature(klass.__init__).parameters.items():
                if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    out.setdefault(name, p.default)
    return out


def _check_signature(cls, config):
    """ValueError unless ``cls`` takes every argument of ``config`` (by name), with a number where
    its default is a number (and for ``learning_rate``) and true / false where it is a bool."""
    named = _named_arguments(cls)
    unknown = sorted(set(config) - set(named))
    if unknown:
        raise ValueError(f"{cls.__name__} refused it: unexpected argument(s) {', '.join(unknown)}")
    for key, value in config.items():
        default = named[key]
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif key == "learning_rate" or isinstance(default, numbers.Real):
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            expected = "a number"
        else:
            continue
        if not ok:
            raise ValueError(f"{cls.__name__} refused it: {key}={value!r}, expected {expected}")


def keras_object(obj, **config):
    """The Keras-serialized config of ``obj`` (a class or an instance) called with ``config``:
    only the arguments given (all of an instance's), checked by the constructor here (an
    optimizer's signature: see :func:`_unbuilt`), so a broken preset fails on import."""
    if _unbuilt(obj):
        _check_signature(obj, config)
        custom = keras.saving.get_registered_name(obj)
        builtin = getattr(keras.optimizers, obj.__name__, None) is obj
        return {"module": "keras.optimizers" if builtin else obj.__module__,
                "class_name": obj.__name__, "config": dict(config),
                "registered_name": None if builtin else custom}
    with _no_draws():
        instance = obj(**config) if isinstance(obj, type) else obj
        full = keras.saving.serialize_keras_object(instance)
    return {**full, "config": dict(config)} if isinstance(obj, type) else full


def arguments(value):
    """A Keras object config's arguments with the constructor's defaults filled in (``None`` for
    an unused object); a plain dict (a run saved before the objects were Keras configs) as is."""
    if not isinstance(value, dict) or "class_name" not in value:
        return value
    cls = _optimizer_class(value.get("registered_name") or value["class_name"])
    if _unbuilt(cls):
        named = _named_arguments(cls).items()
        defaults = {k: v for k, v in named if v is not inspect.Parameter.empty}
        return {**defaults, **value["config"]}
    with _no_draws():
        full = keras.saving.deserialize_keras_object(copy.deepcopy(value)).get_config()
    return {**full, **value["config"]}


@dataclass(frozen=True)
class Field:
    """One leaf of the schema (or of a card's or tuner job's table): its type, default, meaning.

    A ``list`` holds ``item`` values (``minimum`` / ``maximum`` bound each one; ``distinct``: not
    empty, no repeats); ``also``: other values accepted as they are (``False``); ``what``: the
    expected value in words, when the type does not say it.
    """

    type: type
    default: object = None
    doc: str = ""
    choices: tuple = ()
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    bare: bool = True  # whether the bare leaf name may mean this key (False: another key owns it)
    item: type = None
    distinct: bool = False
    also: tuple = ()
    what: str = ""

    def expected(self):
        if self.what:
            return self.what
        text = _NAMES.get(self.type, self.type.__name__)
        if self.type is list and self.item is not None:
            text = f"a list of {_PLURALS[self.item]}"
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        bounds = [f">= {self.minimum}"] if self.minimum is not None else []
        bounds += [f"<= {self.maximum}"] if self.maximum is not None else []
        if bounds:
            text += " " + " and ".join(bounds)
        return text + (" (or none)" if self.nullable else "")


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
          dict: "a table of key = value", list: "a list"}
_PLURALS = {int: "integers", float: "numbers", str: "strings", dict: "tables"}


@dataclass(frozen=True)
class Section:
    """A nested table of fields; ``optional`` ones may be ``None`` (unused)."""

    doc: str
    fields: dict
    optional: bool = False


@dataclass(frozen=True)
class KerasObject:
    """A Keras object held as its serialized config: ``default`` (class, arguments) when unset or
    first set; ``keys``: arguments bare override names may mean; ``get`` builds it, and it must be
    a ``base`` (default: the default's class)."""

    default: tuple
    doc: str = ""
    keys: tuple = ()
    optional: bool = False
    base: type = None
    get: object = keras.saving.deserialize_keras_object

    def __post_init__(self):
        object.__setattr__(self, "base", self.base or self.default[0])

    def make_default(self):
        return keras_object(self.default[0], **self.default[1])

    def expected(self):
        return f"a Keras-serialized {self.base.__name__} (or a name)"


def _default(cls, argument):
    """The default of a constructor argument: the one place it is written."""
    return _named_arguments(cls)[argument]


#: ``model.cell`` -> its layer: the builder dispatches through it; the cell choices come from it.
CELLS = {"simple_rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU,
         "fast_dropout": layers.FastDropoutRNN, "layer_norm_lstm": layers.LayerNormLSTM,
         "layer_norm_gru": layers.LayerNormGRU}
_WITH_CELL_STATE = tuple(k for k, cls in CELLS.items() if issubclass(cls, layers.LSTM))
_GATED = tuple(k for k, cls in CELLS.items() if issubclass(cls, (layers.LSTM, layers.GRU)))


def _cell_default(argument):
    """The default every cell's constructor gives ``argument`` (they agree, or import fails)."""
    (value,) = {_default(cls, argument) for cls in CELLS.values()}
    return value


def _init(doc, name):
    """An initializer key whose default is the layer's (``"glorot_uniform"``: GlorotUniform())."""
    return KerasObject((type(keras.initializers.get(name)), {}), doc,
                       base=keras.initializers.Initializer, get=keras.initializers.get)


_RATE = {"minimum": 0.0, "maximum": 0.99}
_FD_RNN, _FD_DENSE = layers.FastDropoutRNN, layers.FastDropoutDense
SCHEMA = Section("a zoo configuration", {
    "name": Field(str, "", "the zoo name"),
    "task": Field(str, "polyphonic", "data family: data, input, loss, metrics, evaluation",
                  choices=tuple(tasks.TASKS)),
    "description": Field(str, "", "one line"),
    # a layer argument's default is its constructor's, except bias_init (a constant, the layers'
    # "zeros") and output_activation (Dense's is linear)
    "model": Section("the network", {
        "cell": Field(str, "simple_rnn", "recurrent layer (gru: Keras' GRU, reset_after=True; "
                      "layer_norm_*: layers.LayerNormLSTM / LayerNormGRU)", choices=tuple(CELLS)),
        "units": Field(int, 200, "hidden units (per direction)", minimum=1),
        "layers": Field(int, 1, "stacked recurrent layers", minimum=1),
        "bidirectional": Field(bool, False, "wrap each layer in Bidirectional"),
        "activation": Field(str, _cell_default("activation"), "hidden nonlinearity",
                            choices=("tanh", "relu", "trec", "sigmoid", "linear")),
        "lstm_output_tanh": Field(bool, _default(layers.LSTM, "output_activation") == "same",
                                  "LSTM: keep the output tanh (output_activation='same'; False: "
                                  "h = o * c, Gers & Schmidhuber)"),
        "input_dim": Field(int, 88, "features per timestep (vocabulary size for ptb)", minimum=1),
        "output_dim": Field(int, 88, "outputs per timestep", minimum=1),
        "output_activation": Field(str, "sigmoid", "output nonlinearity",
                                   choices=("sigmoid", "softmax", "linear")),
        "readout": Field(str, "sequence", "'sequence': an output every step; 'last': only the last",
                         choices=("sequence", "last")),
        "kernel_init": _init("input-to-hidden weights", _cell_default("kernel_initializer")),
        "recurrent_init": _init("hidden-to-hidden weights", _cell_default("recurrent_initializer")),
        "output_init": _init("hidden-to-output weights",
                             _default(keras.layers.Dense, "kernel_initializer")),
        "bias_init": Field(float, 0.0, "constant initial hidden / output bias"),
    }),
    "regularization": Section("regularizers", {
        "weight_noise": KerasObject(
            (perturbations.WeightNoise, {"stddev": 0.05}),
            "Gaussian weight noise (keras_rnnreg.perturbations.WeightNoise)",
            ("stddev", "mode", "per", "target", "sampling"), optional=True),
        "dropconnect": KerasObject(
            (perturbations.DropConnect, {"rate": 0.5}),
            "DropConnect (keras_rnnreg.perturbations.DropConnect)",
            ("rate", "scale", "per", "target"), optional=True),
        "weight_penalty": Section(
            "L1 / L2 penalty on the input, recurrent and output weights (RNN-NBR)", {
                "kind": Field(str, "l2", "L1 or L2 (Tikhonov)", choices=("l1", "l2")),
                "strength": Field(float, 1e-4, "λ", minimum=0.0),
            }, optional=True),
        "fast_dropout": Section("fast dropout (needed by model.cell = 'fast_dropout')", {
            "input_rate": Field(float, _default(_FD_RNN, "rate"), "dropout rate of the inputs",
                                **_RATE),
            "recurrent_rate": Field(float, _default(_FD_RNN, "recurrent_rate"), "dropout rate "
                                    "of the recurrent inputs (none: input_rate)", nullable=True,
                                    **_RATE),
            "output_rate": Field(float, _default(_FD_DENSE, "rate"), "dropout rate of the "
                                 "output layer's inputs", **_RATE),
            "moments": Field(str, _default(_FD_RNN, "moments"), "Gaussian moments",
                             choices=layers.fast_dropout.MOMENTS),
            "inference": Field(str, _default(_FD_RNN, "inference"), "'marginal': predict with the "
                               "propagated moments (the trained objective); 'mean': the "
                               "deterministic mean network",
                               choices=layers.fast_dropout.INFERENCE),
        }, optional=True),
        "norm_stabilizer": KerasObject(
            (regularizers.NormStabilizer, {"beta": 500.0}),
            "norm-stabilizer (keras_rnnreg.regularizers.NormStabilizer), on every recurrent layer",
            ("beta", "cost", "on", "target"), optional=True),
        "activation_regularization": KerasObject(
            (regularizers.ActivationRegularization, {"alpha": 2.0}),
            "AR α·mean(h_t²) of AWD-LSTM (keras_rnnreg.regularizers.ActivationRegularization), "
            "on every recurrent layer", ("alpha",), optional=True),
        "temporal_activation_regularization": KerasObject(
            (regularizers.TemporalActivationRegularization, {"beta": 1.0}),
            "TAR β·mean((h_t − h_{t−1})²) of AWD-LSTM "
            "(keras_rnnreg.regularizers.TemporalActivationRegularization), on every recurrent "
            "layer; β: regularization.temporal_activation_regularization.beta (bare beta is the "
            "norm-stabilizer's)", optional=True),
        "zoneout": Section("zoneout (Krueger et al. 2016) on every recurrent layer", {
            "cell": Field(float, _default(layers.SimpleRNN, "zoneout"), "LSTM: the rate at which "
                          "a memory-cell unit keeps its previous value (other cells: 0)",
                          bare=False, **_RATE),  # bare `cell` stays model.cell
            "hidden": Field(float, _default(layers.SimpleRNN, "zoneout"), "the rate at which a "
                            "hidden-state unit keeps its previous value", **_RATE),
        }, optional=True),
        "dropout": Field(float, 0.0, "dropout on the outputs of every recurrent layer", **_RATE),
        "spectral_radius_limit": Field(float, None, "SpectralRadiusLimit constraint on the "
                                       "recurrent kernel", nullable=True, minimum=0.0),
    }),
    "optimizer": KerasObject(
        (keras.optimizers.RMSprop, {"learning_rate": 1e-3}), "the optimizer",
        ("learning_rate", "momentum", "rho", "nesterov", "global_clipnorm"),
        base=keras.optimizers.Optimizer, get=keras.optimizers.get),
    "data": Section("data", {
        "source": Field(str, None, "file / folder / 'music21-chorales' / 'synthetic'",
                        nullable=True),
        "batch_size": Field(int, 32, "training batch size", minimum=1),
        "chunk": Field(int, 100, "polyphonic: training chunk length", minimum=1),
        "mask_padding": Field(bool, False, "polyphonic: mask the leading all-zero steps (the "
                              "chunks' front padding; FrontPaddingMask), needed by "
                              "layer-normalized cells"),
        "seq_len": Field(int, 50, "ptb: sequence length", minimum=1),
        "length": Field(int, 400, "adding: sequence length", minimum=2),
        "train_size": Field(int, 100_000, "adding: training sequences", minimum=1),
        "valid_size": Field(int, 1_000, "adding: validation sequences", minimum=1),
        "test_size": Field(int, 10_000, "adding: test sequences", minimum=1),
        "limit": Field(int, None, "music21-chorales / synthetic: how many sequences",
                       nullable=True, minimum=1),
    }),
    "training": Section("the training schedule", {
        "epochs": Field(int, 100, "maximum epochs", minimum=1),
        "monitor": Field(str, "val_loss", "validation quantity for early stopping and the best "
                         "checkpoint"),
        "mode": Field(str, "min", "whether smaller or larger is better", choices=("min", "max")),
        "patience": Field(int, None, "early stopping: epochs without improvement", nullable=True,
                          minimum=1),
        "nan_restart": Field(bool, True, "on NaN: halve the learning rate, restart from the last "
                             "epoch"),
        "max_restarts": Field(int, 10, "NaN restarts before giving up", minimum=0),
        "max_steps_per_epoch": Field(int, None, "cap on batches per epoch", nullable=True,
                                     minimum=1),
    }),
    "paper": Section("metadata: the paper's set-up and number (never used by the graph code)", {
        "reference": Field(str, "", "the paper"),
        "table": Field(str, "", "table / section"),
        "metric": Field(str, "", "what the number measures"),
        "value": Field(float, None, "the paper's number", nullable=True),
        "other": Field(dict, None, "other reported numbers", nullable=True),
        "notes": Field(str, "", "our readings of ambiguous passages"),
    }),
})

READ_ONLY = ("paper", "name")


def check_table(table, section, where, error=ConfigError):
    """A card's or tuner job's TOML ``table`` checked against ``section`` (the keys it gives):
    ``error`` naming ``where``, the key, the value and what was expected; returns ``table``."""
    if not isinstance(table, dict):
        raise error(f"{where}: expected a table")
    unknown = set(table) - set(section.fields)
    if unknown:
        raise error(f"{where}: unknown key(s) {sorted(unknown)}; expected some of "
                    f"{sorted(section.fields)}")
    for key, value in table.items():
        table[key] = check_value((key,), section.fields[key], value, where, error)
    return table


def load_toml(path, error, kind):
    """``(the file, its table)`` of a card or tuner job (``kind`` ``"card"`` / ``"job"``) named by
    path or by its shipped name: FileNotFoundError if there is none, ``error`` if not TOML."""
    path = _shipped.find(kind, path)
    try:
        with open(path, "rb") as f:
            return path, tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise error(f"{path}: not valid TOML: {err}") from None


# ------------------------------------------------------------------------------------------ paths
def _split(path):
    """``(schema node or None, its path, the rest: a path inside a Keras object's config)``."""
    node = SCHEMA
    for i, part in enumerate(path):
        if isinstance(node, KerasObject):
            return node, path[:i], path[i:]
        if not isinstance(node, Section) or part not in node.fields:
            return None, path, ()
        node = node.fields[part]
    return node, path, ()


def _paths(section=SCHEMA, prefix=()):
    """``(path, node)`` of every key: sections, leaves, the named arguments of Keras objects."""
    out = []
    for key, node in section.fields.items():
        out.append((prefix + (key,), node))
        if isinstance(node, Section):
            out += _paths(node, prefix + (key,))
        elif isinstance(node, KerasObject):
            out += [(prefix + (key, arg), None) for arg in node.keys]
    return out


def dotted(path):
    return ".".join(path)


def defaults(section=SCHEMA):
    """A config dict of defaults (optional sections and objects are None)."""
    out = {}
    for key, node in section.fields.items():
        if isinstance(node, (Section, KerasObject)) and node.optional:
            out[key] = None
        elif isinstance(node, Section):
            out[key] = defaults(node)
        elif isinstance(node, KerasObject):
            out[key] = node.make_default()
        else:
            out[key] = copy.deepcopy(node.default)
    return out


def _object(node, path, value):
    """A Keras object's config from a serialized config, an instance or a class name."""
    if isinstance(value, dict) and isinstance(value.get("config"), dict) and "class_name" in value:
        return copy.deepcopy(value)
    try:
        if isinstance(value, str) and _unbuilt(_optimizer_class(value)) and _unbuilt(node.base):
            return keras_object(_optimizer_class(value))
        if isinstance(value, str):  # ours (``CliminRMSprop``) or Keras' (``adam``, ``RMSprop``)
            registered = keras.saving.get_registered_object(f"{PACKAGE}>{value}")
            with _no_draws():
                value = registered() if registered is not None else node.get(value)
        if isinstance(value, (dict, str, type)) or not isinstance(value, node.base):
            raise ValueError(f"got {type(value).__name__}")
        return keras_object(value)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{dotted(path)}={value!r}: expected {node.expected()} ({err})") from None


def complete(partial, section=SCHEMA, prefix=()):
    """``partial`` (nested) merged over the defaults; unknown keys raise :class:`ConfigError`."""
    if not isinstance(partial, dict):
        raise ConfigError(f"{dotted(prefix) or 'config'}: expected a table (dict) of keys, got "
                          f"{partial!r}")
    out = defaults(section)
    for key, value in partial.items():
        if key not in section.fields:
            raise ConfigError(_unknown_key_message(prefix + (key,)))
        node, path = section.fields[key], prefix + (key,)
        if value is None and isinstance(node, (Section, KerasObject)) and not node.optional:
            raise ConfigError(f"{dotted(path)} cannot be none")
        if isinstance(node, Section):
            out[key] = None if value is None else complete(value, node, path)
        elif isinstance(node, KerasObject):
            out[key] = None if value is None else _object(node, path, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_conflicts(c):
    """ConfigError for a combination of values the network cannot honour."""
    m, reg = c["model"], c["regularization"]
    cell, zoneout = m["cell"], reg["zoneout"]
    fast = cell == "fast_dropout"
    for broken, key, message in (
        (fast and reg["fast_dropout"] is None, "regularization.fast_dropout",
         "model.cell='fast_dropout' needs the regularization.fast_dropout section (its rates); set "
         "one of its keys, e.g. --set regularization.fast_dropout.input_rate=0.2"),
        (cell in _GATED and m["activation"] in ("relu", "trec"), "model.activation",
         f"model.activation={m['activation']!r} is for simple_rnn and fast_dropout cells; "
         f"model.cell={cell!r} takes tanh, sigmoid or linear"),
        (fast and m["bidirectional"], "model.bidirectional",
         "model.bidirectional is not available with model.cell='fast_dropout'"),
        (fast and m["output_activation"] not in ("sigmoid", "linear"), "model.output_activation",
         f"model.output_activation={m['output_activation']!r} is not available with fast dropout "
         "(sigmoid or linear)"),
        (cell in ("layer_norm_lstm", "layer_norm_gru") and c["task"] == "polyphonic"
         and not c["data"]["mask_padding"], "data.mask_padding",
         f"model.cell={cell!r} on front-padded polyphonic chunks needs data.mask_padding=true: the "
         "normalized zero state of the padded steps multiplies the gradient by gain/sqrt(ε) at "
         "every step (it overflows within ~20 steps)"),
        (fast and zoneout is not None, "regularization.zoneout",
         "zoneout is not available with model.cell='fast_dropout' (it carries a variance that "
         "zoneout would not mix); set regularization.zoneout=none"),
        (cell not in _WITH_CELL_STATE and zoneout and zoneout["cell"] > 0,
         "regularization.zoneout.cell",
         f"regularization.zoneout.cell is the LSTM's memory-cell rate; a {cell} has no memory "
         "cell: set regularization.zoneout.hidden (and zoneout.cell=0)"),
    ):
        if broken:
            raise ConfigError(f"model.cell and {key}: {message}")


def validate(config):
    """The :class:`Config` of a complete config dict: every value checked (Keras objects: by
    building them), and that the network can honour their combination."""
    if isinstance(config, Config):
        return config  # checked when it was made
    key = json.dumps(config, sort_keys=True, default=repr)
    if key not in _CHECKED:  # the same content (a checkpoint's copy of it) is checked once
        _check_section(config, SCHEMA, ())
        _check_conflicts(config)
        if len(_CHECKED) >= 256:
            _CHECKED.pop(next(iter(_CHECKED)))
        _CHECKED[key] = Config(config)
    return _CHECKED[key]


_CHECKED = {}  # JSON of a checked config -> its Config (they are read-only, so shared)


def _check_section(config, section, prefix):
    for key, node in section.fields.items():
        value = config.get(key) if isinstance(config, dict) else None
        path = prefix + (key,)
        if isinstance(node, Field):
            config[key] = check_value(path, node, value)
        elif value is None:
            if not node.optional:
                raise ConfigError(f"{dotted(path)} is missing")
        elif isinstance(node, Section):
            _check_section(value, node, path)
        else:
            _build(node, path, value)


def _build(node, path, value, where=None):
    """The Keras object of a config (ConfigError naming the key if its constructor refuses); an
    optimizer's signature is only checked (:func:`_unbuilt`) and None returned."""
    where = where or f"{dotted(path)}={value!r}"
    if not isinstance(value, dict) or not isinstance(value.get("config"), dict):
        raise ConfigError(f"{where}: expected {node.expected()}")
    if _unbuilt(node.base):
        cls = _optimizer_class(value.get("registered_name") or value.get("class_name"))
        if cls is None:
            raise ConfigError(f"{where}: no optimizer class {value.get('class_name')!r} (Keras' "
                              "keras.optimizers or keras_rnnreg.optimizers)")
        try:
            _check_signature(cls, value["config"])
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        return None
    try:
        with _no_draws():
            obj = node.get(copy.deepcopy(value))  # keras.optimizers.get edits its argument
    except (ValueError, TypeError, KeyError) as err:
        reason = str(err).rsplit("Exception encountered: ", 1)[-1].strip()  # Keras' wrapping
        raise ConfigError(f"{where}: {value.get('class_name')} refused it: {reason}") from None
    if not isinstance(obj, node.base):
        raise ConfigError(f"{where}: expected a {node.base.__name__}, got a "
                          f"{type(obj).__name__}")
    return obj


def _about(where, node):
    return f" [{where}: {node.doc}]" if node.doc else ""


def check_value(path, node, value, where=None, error=ConfigError):
    """The value, converted where lossless (int -> float); ``error`` otherwise (``where``: the
    file of a card's or job's table)."""
    key = dotted(path)

    def fail(reason=None):
        got = f"{where}: {key} = {value!r}" if where else \
            f"{key}={value!r} ({type(value).__name__})"
        raise error(f"{got}: expected {node.expected()}" + (f"; {reason}" if reason else "")
                    + _about(key, node))

    if value is None and node.nullable or any(value is v for v in node.also):
        return value
    if node.type is list:
        inner = Field(node.item, minimum=node.minimum, maximum=node.maximum)
        if not isinstance(value, list) or not all(_fits(inner, v) for v in value) \
                or node.distinct and (not value or len(set(value)) != len(value)):
            fail()
        return value
    numeric = not isinstance(value, bool) and isinstance(value, numbers.Real)
    fits = {bool: isinstance(value, bool), int: numeric and isinstance(value, numbers.Integral),
            float: numeric, str: isinstance(value, str), dict: isinstance(value, dict)}
    if not fits[node.type]:
        fail()
    if numeric:
        value = node.type(value)
        if value != value:
            fail("NaN is not allowed")
    if node.choices and value not in node.choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in node.choices], n=3)
        fail(f"did you mean {' or '.join(map(repr, close))}?" if close else None)
    if node.minimum is not None and value < node.minimum \
            or node.maximum is not None and value > node.maximum:
        fail()
    return value


def _fits(node, value):
    try:
        check_value((), node, value)
        return True
    except ConfigError:
        return False


def _unknown_key_message(path):
    key = dotted(path)
    close = difflib.get_close_matches(key, [dotted(p) for p, _ in _paths()], n=4, cutoff=0.6)
    by_leaf = [dotted(p) for p, _ in _paths() if p[-1] == path[-1]]
    suggestions = list(dict.fromkeys(close + by_leaf))[:5]
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    return f"unknown configuration key {key!r}{hint} (`rnnreg list --keys` lists every key)"


def resolve_key(key):
    """A user's key (dotted, ``__``-separated, or an unambiguous bare leaf name) as a path."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"invalid configuration key {key!r}")
    parts = tuple(key.replace("__", ".").split("."))
    if _split(parts)[0] is not None:
        return parts
    if len(parts) == 1:
        matches = [p for p, node in _paths() if p[-1] == parts[0] and p[0] not in READ_ONLY
                   and getattr(node, "bare", True)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConfigError(f"ambiguous configuration key {key!r}: it could be "
                              f"{', '.join(dotted(m) for m in matches)}; write the full dotted key")
    raise ConfigError(_unknown_key_message(parts))


def _literal(text):
    """A command-line value inside a Keras object: none, a boolean, a number or a string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    return text.strip()


def parse_value(path, text):
    """Convert a command-line string to the type the key expects (ConfigError if it cannot)."""
    node, _, inner = _split(path)
    where, lowered = dotted(path), text.strip().lower()
    none = lowered in ("none", "null")
    if isinstance(node, KerasObject):
        return _literal(text) if inner else None if none else text.strip()
    if none and (isinstance(node, Section) or node.nullable):
        return None
    if isinstance(node, Section):
        raise ConfigError(f"{where} is a section; set one of its keys ({', '.join(node.fields)}) "
                          "or set it to none")
    if none:
        raise ConfigError(f"{where}={text!r}: expected {node.expected()}; it cannot be none")
    if node.type in (str, list):
        return text
    if node.type is bool and lowered in _BOOLS:
        return _BOOLS[lowered]
    if node.type in (int, float):
        with contextlib.suppress(ValueError):
            return node.type(text)
    raise ConfigError(f"{where}={text!r}: expected {node.expected()}{_about(where, node)}")


_BOOLS = {**dict.fromkeys(("true", "1", "yes", "on"), True),
          **dict.fromkeys(("false", "0", "no", "off"), False)}


def flatten_overrides(overrides, prefix=()):
    """``{"optimizer": {"learning_rate": 0.1}, "units": 8}`` -> [(path, value)], keys resolved."""
    out = []
    for key, value in overrides.items():
        parts = tuple(str(key).replace("__", ".").split("."))
        path = prefix + parts if prefix else resolve_key(key)
        node, _, inner = _split(path)
        if node is None:
            raise ConfigError(_unknown_key_message(path))
        arguments_of = isinstance(node, KerasObject) and not inner and isinstance(value, dict) \
            and "class_name" not in value
        if isinstance(value, dict) and (isinstance(node, Section) or arguments_of):
            out += flatten_overrides(value, path)
        else:
            out.append((path, value))
    return out


def _argument_slot(obj, inner, path):
    """The object and key that ``inner`` (a path of arguments) names in a serialized object: a key
    it lacks is looked up in the objects it wraps (``SpectralRadius``' base), else added to it."""
    config = obj["config"]
    for part in inner[:-1]:
        child = config.get(part)
        if not (isinstance(child, dict) and "class_name" in child):
            raise ConfigError(f"{dotted(path)}: {part!r} is not a Keras object of "
                              f"{obj['class_name']}")
        obj, config = child, child["config"]
    key = inner[-1]
    if key not in config:
        for child in config.values():
            if isinstance(child, dict) and "class_name" in child and key in child["config"]:
                return child, key
    return obj, key


def _set_argument(node, path, obj, inner, value):
    if inner == ("class_name",):  # another class, keeping the arguments it accepts
        fresh = _object(node, path, value)
        accepted = arguments(fresh)
        fresh["config"] = {k: v for k, v in obj["config"].items() if k in accepted and k != "name"}
        return fresh
    obj = copy.deepcopy(obj)
    holder, key = _argument_slot(obj, inner, path)
    old = holder["config"].get(key)
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if value is None and old is None and key not in holder["config"]:
        return obj
    holder["config"][key] = value
    return obj


def apply_overrides(config, overrides, parse=False):
    """A copy of ``config`` with ``overrides`` set and checked.

    ``overrides``: a mapping of keys (dotted, ``__``-separated or bare leaf names; sections as
    nested dicts) to values, or a list of ``"key=value"`` strings (``parse`` is then implied:
    values are converted to the key's type).
    """
    config = copy.deepcopy(config)
    if isinstance(overrides, (list, tuple)):
        items = []
        for item in overrides:
            if not isinstance(item, str) or "=" not in item:
                raise ConfigError(f"--set expects key=value, got {item!r}")
            key, value = item.split("=", 1)
            path = resolve_key(key.strip())
            items.append((path, parse_value(path, value)))
    else:
        items = flatten_overrides(dict(overrides))
        if parse:
            items = [(p, parse_value(p, v) if isinstance(v, str) else v) for p, v in items]
    for path, value in items:
        if path[0] in READ_ONLY:
            raise ConfigError(f"{dotted(path)} is read-only metadata and cannot be overridden")
        node, head, inner = _split(path)
        target = config
        for i, part in enumerate(head[:-1]):
            if target.get(part) is None:  # an unused optional section: start from defaults
                target[part] = defaults(_split(head[: i + 1])[0])
            target = target[part]
        last = head[-1]
        if isinstance(node, KerasObject):
            if inner:
                current = target.get(last) or node.make_default()
                target[last] = _set_argument(node, path, current, inner, value)
                _build(node, head, target[last], where=f"{dotted(path)}={value!r}")
            elif value is None and not node.optional:
                raise ConfigError(f"{dotted(path)} cannot be none")
            else:
                target[last] = None if value is None else _object(node, path, value)
        elif isinstance(node, Section):
            if value is not None or not node.optional:
                raise ConfigError(f"{dotted(path)} is a section: set one of its keys, or none")
            target[last] = None
        else:
            target[last] = check_value(path, node, value)
    return validate(config)


def get_value(config, key):
    """The value of a key of a resolved config (a Keras object's argument: as given, else its
    constructor's default)."""
    path = resolve_key(key)
    _, head, inner = _split(path)
    value = config
    for part in head:
        value = value.get(part) if isinstance(value, dict) else None
    if inner and value is not None:
        holder, arg = _argument_slot(value, inner, path)
        return arguments(holder).get(arg)
    return value


def describe_keys():
    """Lines ``key  (type, default)  doc`` for every key, for ``rnnreg list --keys``."""
    lines = []
    for path, node in _paths():
        if isinstance(node, Field):
            lines.append(f"{dotted(path):45s} {node.expected():40s} {node.doc}")
        elif isinstance(node, KerasObject):
            cls = node.default[0].__name__
            lines.append(f"{dotted(path):45s} {node.expected():40s} {node.doc} (default {cls}"
                         "; KEY.ARGUMENT sets an argument, KEY.class_name the class)")
        elif node is None:
            lines.append(f"{dotted(path):45s} an argument of the object's constructor")
    return lines
