"""The configuration schema of the zoo: every key a preset may hold, its type and its default.

A resolved configuration is a plain nested dict with the sections below. Presets
(:mod:`keras_rnnreg.zoo.noise_study`, :mod:`keras_rnnreg.zoo.norm_stabilizer`) give only what
differs from these defaults; :func:`complete` fills in the rest and :func:`validate` checks every
key and value. Overrides (``build(name, units=8)``, ``rnnreg train NAME --set
optimizer.learning_rate=0.01``) go through :func:`apply_overrides`, which knows the nested keys,
accepts an unambiguous bare leaf name (``units`` for ``model.units``), and raises
:class:`ConfigError` naming the key, the value and what was expected.

Optional sections (``regularization.weight_noise`` and the like) are ``None`` when unused; setting
one of their keys creates the section from its defaults, and setting the section to ``None``
(``--set regularization.weight_noise=none``) removes it.
"""

import copy
import difflib
import math
import numbers
from dataclasses import dataclass

from keras_rnnreg.regularizers import COSTS
from keras_rnnreg.zoo import tasks

CELLS = ("simple_rnn", "lstm", "gru", "fast_dropout")
ACTIVATIONS = ("tanh", "relu", "trec", "sigmoid", "linear")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "linear")
INITS = ("sparse", "glorot_uniform", "orthogonal", "identity", "uniform", "normal", "zeros")
OPTIMIZERS = ("rmsprop", "climin_rmsprop", "sgd", "adam")
DROPCONNECT_SCALES = ("training", "inference", "never")


class ConfigError(ValueError):
    """An invalid configuration key or value (a ``ValueError``)."""


@dataclass(frozen=True)
class Field:
    """One leaf of the schema: its type, default and what it means."""

    type: type
    default: object = None
    doc: str = ""
    choices: tuple = ()
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None

    def expected(self):
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
                 dict: "a table of key = value"}
        text = names.get(self.type, self.type.__name__)
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        bounds = []
        if self.minimum is not None:
            bounds.append(f">= {self.minimum}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum}")
        if bounds:
            text += " " + " and ".join(bounds)
        if self.nullable:
            text += " (or none)"
        return text


@dataclass(frozen=True)
class Section:
    """A nested table of fields; ``optional`` ones may be ``None`` (unused)."""

    fields: dict
    doc: str = ""
    optional: bool = False


def _init_section(doc, **defaults):
    base = {
        "kind": Field(str, "glorot_uniform", "initializer", choices=INITS),
        "connections": Field(int, 15, "sparse: nonzero incoming weights per unit", minimum=1),
        "stddev": Field(float, 1.0, "sparse / normal: standard deviation", minimum=0.0),
        "scale": Field(float, 0.05, "uniform: weights from U[-scale, scale]", minimum=0.0),
        "spectral_radius": Field(
            float, None, "rescale each square block to this spectral radius", nullable=True, minimum=0.0
        ),
    }
    fields = {}
    for key, f in base.items():
        fields[key] = Field(f.type, defaults.get(key, f.default), f.doc, f.choices, f.nullable, f.minimum)
    return Section(fields, doc)


SCHEMA = Section(
    {
        "name": Field(str, "", "the zoo name"),
        "task": Field(str, "polyphonic", "data family: decides data, loss, metrics, evaluation", choices=tuple(tasks.TASKS)),
        "description": Field(str, "", "one line"),
        "model": Section(
            {
                "cell": Field(str, "simple_rnn", "recurrent layer (gru: Keras' GRU, reset_after=True)",
                               choices=CELLS),
                "units": Field(int, 200, "hidden units (per direction)", minimum=1),
                "layers": Field(int, 1, "stacked recurrent layers", minimum=1),
                "bidirectional": Field(bool, False, "wrap each layer in keras.layers.Bidirectional"),
                "activation": Field(str, "tanh", "hidden nonlinearity", choices=ACTIVATIONS),
                "lstm_output_tanh": Field(
                    bool, True, "LSTM: keep the output tanh (False: h = o * c, Gers & Schmidhuber)"
                ),
                "input_dim": Field(int, 88, "features per timestep (vocabulary size for ptb)", minimum=1),
                "output_dim": Field(int, 88, "outputs per timestep", minimum=1),
                "output_activation": Field(str, "sigmoid", "output nonlinearity", choices=OUTPUT_ACTIVATIONS),
                "readout": Field(str, "sequence", "'sequence': an output every step; 'last': only the last",
                                 choices=("sequence", "last")),
                "kernel_init": _init_section("input-to-hidden weights"),
                "recurrent_init": _init_section("hidden-to-hidden weights", kind="orthogonal"),
                "output_init": _init_section("hidden-to-output weights"),
                "bias_init": Field(float, 0.0, "constant initial hidden / output bias"),
            },
            "the network",
        ),
        "regularization": Section(
            {
                "weight_noise": Section(
                    {
                        "stddev": Field(float, 0.05, "σ", minimum=0.0),
                        "mode": Field(str, "additive", "W + σε or W(1 + σε)", choices=("additive", "multiplicative")),
                        "per": Field(str, "timestep", "a new draw per timestep or per sequence",
                                     choices=("timestep", "sequence")),
                        "target": Field(str, "recurrent", "which kernel", choices=("recurrent", "input", "both")),
                        "sampling": Field(str, "weight", "weight draws or local reparameterization",
                                          choices=("weight", "local")),
                    },
                    "Gaussian weight noise (keras_rnnreg.perturbations.WeightNoise)",
                    optional=True,
                ),
                "dropconnect": Section(
                    {
                        "rate": Field(float, 0.5, "drop probability of a recurrent weight", minimum=0.0, maximum=0.999),
                        "per": Field(str, "timestep", "a new mask per timestep or per sequence",
                                     choices=("timestep", "sequence")),
                        "target": Field(str, "recurrent", "which kernel", choices=("recurrent", "input", "both")),
                        "scale": Field(str, "training", "where the scale is restored: 'training' "
                                       "(kept weights x 1/(1 - rate)), 'inference' ((1 - rate) W) "
                                       "or 'never' (DropConnect's scale=True / 'inference' / False)",
                                       choices=DROPCONNECT_SCALES),
                    },
                    "DropConnect (keras_rnnreg.perturbations.DropConnect)",
                    optional=True,
                ),
                "weight_penalty": Section(
                    {
                        "kind": Field(str, "l2", "L1 or L2 (Tikhonov)", choices=("l1", "l2")),
                        "strength": Field(float, 1e-4, "λ", minimum=0.0),
                    },
                    "L1 / L2 penalty on the input, recurrent and output weights (RNN-NBR)",
                    optional=True,
                ),
                "fast_dropout": Section(
                    {
                        "input_rate": Field(float, 0.2, "dropout rate of the inputs", minimum=0.0, maximum=0.99),
                        "recurrent_rate": Field(float, 0.5, "dropout rate of the recurrent inputs",
                                                minimum=0.0, maximum=0.99),
                        "output_rate": Field(float, 0.5, "dropout rate of the output layer's inputs",
                                             minimum=0.0, maximum=0.99),
                        "moments": Field(str, "quadrature", "Gaussian moments", choices=("quadrature", "probit")),
                        "inference": Field(
                            str, "marginal",
                            "'marginal': predict with the propagated moments (the trained objective); "
                            "'mean': the deterministic mean network",
                            choices=("marginal", "mean"),
                        ),
                    },
                    "fast dropout (model.cell = 'fast_dropout')",
                    optional=True,
                ),
                "norm_stabilizer": Section(
                    {
                        "beta": Field(float, 500.0, "β", minimum=0.0),
                        "cost": Field(str, "norm_diff", "the penalty (regularizers.COSTS)", choices=COSTS),
                        "on": Field(str, "hidden", "hidden states or memory cells", choices=("hidden", "cell")),
                        "target": Field(float, 5.0, "target norm of cost='target'"),
                    },
                    "norm-stabilizer (keras_rnnreg.regularizers.NormStabilizer), on every recurrent layer",
                    optional=True,
                ),
                "dropout": Field(float, 0.0, "dropout on the outputs of every recurrent layer",
                                 minimum=0.0, maximum=0.99),
                "spectral_radius_limit": Field(
                    float, None, "SpectralRadiusLimit constraint on the recurrent kernel", nullable=True, minimum=0.0
                ),
            },
            "regularizers",
        ),
        "optimizer": Section(
            {
                "name": Field(str, "rmsprop", "optimizer", choices=OPTIMIZERS),
                "learning_rate": Field(float, 1e-3, "step rate", minimum=0.0),
                "momentum": Field(float, 0.0, "momentum (rmsprop, climin_rmsprop, sgd)", minimum=0.0, maximum=1.0),
                "rho": Field(float, 0.9, "(climin_)rmsprop: decay of the squared-gradient average", minimum=0.0, maximum=1.0),
                "nesterov": Field(bool, False, "sgd: Nesterov momentum"),
                "global_clipnorm": Field(float, None, "clip the global gradient norm", nullable=True, minimum=0.0),
            },
            "optimizer",
        ),
        "data": Section(
            {
                "source": Field(str, None, "file / folder / 'music21-chorales' / 'synthetic'", nullable=True),
                "batch_size": Field(int, 32, "training batch size", minimum=1),
                "chunk": Field(int, 100, "polyphonic: training chunk length", minimum=1),
                "seq_len": Field(int, 50, "ptb: sequence length", minimum=1),
                "length": Field(int, 400, "adding: sequence length", minimum=2),
                "train_size": Field(int, 100_000, "adding: training sequences", minimum=1),
                "valid_size": Field(int, 1_000, "adding: validation sequences", minimum=1),
                "test_size": Field(int, 10_000, "adding: test sequences", minimum=1),
                "limit": Field(int, None, "music21-chorales / synthetic: how many sequences", nullable=True,
                               minimum=1),
            },
            "data",
        ),
        "training": Section(
            {
                "epochs": Field(int, 100, "maximum epochs", minimum=1),
                "monitor": Field(str, "val_loss", "validation quantity for early stopping and the best checkpoint"),
                "mode": Field(str, "min", "whether smaller or larger is better", choices=("min", "max")),
                "patience": Field(int, None, "early stopping: epochs without improvement", nullable=True, minimum=1),
                "nan_restart": Field(bool, True, "on NaN: halve the learning rate, restart from the last epoch"),
                "max_restarts": Field(int, 10, "NaN restarts before giving up", minimum=0),
                "max_steps_per_epoch": Field(int, None, "cap on batches per epoch", nullable=True, minimum=1),
            },
            "the training schedule",
        ),
        "paper": Section(
            {
                "reference": Field(str, "", "the paper"),
                "table": Field(str, "", "table / section"),
                "metric": Field(str, "", "what the number measures"),
                "value": Field(float, None, "the paper's number", nullable=True),
                "other": Field(dict, None, "other reported numbers", nullable=True),
                "notes": Field(str, "", "our readings of ambiguous passages"),
            },
            "metadata: the paper's set-up and number (never used by the graph code)",
        ),
    },
    "a zoo configuration",
)

READ_ONLY = ("paper", "name")


# ------------------------------------------------------ value checks of cards and tuner jobs
# (TOML tables that are not configurations): key -> (predicate, what is expected).
def _integer(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def integer_at_least(minimum):
    return (lambda v: _integer(v, minimum), f"an integer >= {minimum}")


def text(expected="a string"):
    return (lambda v: isinstance(v, str), expected)


def list_of_text(expected="a list of strings"):
    return (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), expected)


NUMBER = (
    lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "a number",
)
BOOLEAN = (lambda v: isinstance(v, bool), "true or false")
SEEDS = (
    lambda v: isinstance(v, list) and bool(v) and all(_integer(x, 0) for x in v) and len(set(v)) == len(v),
    "a non-empty list of distinct integers >= 0, e.g. [0, 1, 2]",
)


def check_table(table, checks, where, error=ConfigError):
    """Raise ``error`` naming ``where``, the key and the value of the first value that fails."""
    for key, value in table.items():
        if key in checks:
            ok, expected = checks[key]
            if not ok(value):
                raise error(f"{where}: {key} = {value!r}: expected {expected}")


# ------------------------------------------------------------------------------------------ paths
def _node(path):
    node = SCHEMA
    for part in path:
        if not isinstance(node, Section) or part not in node.fields:
            return None
        node = node.fields[part]
    return node


def leaf_paths(section=SCHEMA, prefix=()):
    """Every leaf key of the schema as a tuple path."""
    out = []
    for key, node in section.fields.items():
        if isinstance(node, Section):
            out += leaf_paths(node, prefix + (key,))
        else:
            out.append(prefix + (key,))
    return out


def all_paths(section=SCHEMA, prefix=()):
    out = []
    for key, node in section.fields.items():
        out.append(prefix + (key,))
        if isinstance(node, Section):
            out += all_paths(node, prefix + (key,))
    return out


def dotted(path):
    return ".".join(path)


def defaults(section=SCHEMA):
    """A config dict of defaults (optional sections are None)."""
    out = {}
    for key, node in section.fields.items():
        if isinstance(node, Section):
            out[key] = None if node.optional else defaults(node)
        else:
            out[key] = copy.deepcopy(node.default)
    return out


def complete(partial, section=SCHEMA, prefix=()):
    """``partial`` (nested) merged over the defaults; unknown keys raise :class:`ConfigError`."""
    if partial is None:
        return None if section.optional else defaults(section)
    if not isinstance(partial, dict):
        raise ConfigError(
            f"{dotted(prefix) or 'config'}: expected a table (dict) of keys, got {partial!r}"
        )
    out = defaults(section)
    for key, value in partial.items():
        if key not in section.fields:
            raise ConfigError(_unknown_key_message(prefix + (key,)))
        node = section.fields[key]
        if isinstance(node, Section):
            out[key] = complete(value, node, prefix + (key,)) if value is not None or not node.optional else None
            if value is None and not node.optional:
                raise ConfigError(f"{dotted(prefix + (key,))} cannot be none")
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(config, section=SCHEMA, prefix=()):
    """Check the type and range of every value of a complete config; returns it."""
    for key, node in section.fields.items():
        value = config.get(key) if isinstance(config, dict) else None
        path = prefix + (key,)
        if isinstance(node, Section):
            if value is None:
                if not node.optional:
                    raise ConfigError(f"{dotted(path)} is missing")
                continue
            validate(value, node, path)
        else:
            config[key] = check_value(path, node, value)
    return config


def check_value(path, node, value):
    """The value, converted where lossless (int -> float); ConfigError otherwise."""
    where = dotted(path)

    def fail(reason=None):
        got = f"{value!r} ({type(value).__name__})"
        raise ConfigError(
            f"{where}={got}: expected {node.expected()}" + (f"; {reason}" if reason else "")
            + (f" [{where}: {node.doc}]" if node.doc else "")
        )

    if value is None:
        if node.nullable:
            return None
        fail()
    if node.type is bool:
        if not isinstance(value, bool):
            fail()
    elif node.type is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            fail()
        value = int(value)
    elif node.type is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            fail()
        value = float(value)
        if value != value:
            fail("NaN is not allowed")
    elif node.type is str:
        if not isinstance(value, str):
            fail()
    elif node.type is dict:
        if not isinstance(value, dict):
            fail()
    if node.choices and value not in node.choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in node.choices], n=3)
        fail(f"did you mean {' or '.join(map(repr, close))}?" if close else None)
    if node.minimum is not None and value < node.minimum:
        fail()
    if node.maximum is not None and value > node.maximum:
        fail()
    return value


def _unknown_key_message(path):
    key = dotted(path)
    candidates = [dotted(p) for p in all_paths()]
    close = difflib.get_close_matches(key, candidates, n=4, cutoff=0.6)
    leaf = path[-1]
    by_leaf = [dotted(p) for p in all_paths() if p[-1] == leaf]
    suggestions = list(dict.fromkeys(close + by_leaf))[:5]
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    return f"unknown configuration key {key!r}{hint} (`rnnreg list --keys` lists every key)"


def resolve_key(key):
    """A user's key (dotted, ``__``-separated, or an unambiguous bare leaf name) as a path."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"invalid configuration key {key!r}")
    parts = tuple(key.replace("__", ".").split("."))
    if _node(parts) is not None:
        return parts
    if len(parts) == 1:
        matches = [p for p in all_paths() if p[-1] == parts[0] and p[0] not in READ_ONLY]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConfigError(
                f"ambiguous configuration key {key!r}: it could be "
                + ", ".join(dotted(m) for m in matches)
                + "; write the full dotted key"
            )
    raise ConfigError(_unknown_key_message(parts))


def parse_value(path, text):
    """Convert a command-line string to the type the key expects (ConfigError if it cannot)."""
    node = _node(path)
    where = dotted(path)
    lowered = text.strip().lower()
    if isinstance(node, Section):
        if lowered in ("none", "null"):
            return None
        raise ConfigError(
            f"{where} is a section; set one of its keys ({', '.join(node.fields)}) or set it to none"
        )
    if lowered in ("none", "null"):
        if node.nullable:
            return None
        raise ConfigError(f"{where}={text!r}: expected {node.expected()}; it cannot be none")
    try:
        if node.type is bool:
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if node.type is int:
            return int(text)
        if node.type is float:
            return float(text)
        if node.type is dict:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"{where}={text!r}: expected {node.expected()}"
            + (f" [{where}: {node.doc}]" if node.doc else "")
        ) from None
    return text


def flatten_overrides(overrides, prefix=()):
    """``{"optimizer": {"learning_rate": 0.1}, "units": 8}`` -> [(path, value)], keys resolved."""
    out = []
    for key, value in overrides.items():
        path = prefix + tuple(str(key).replace("__", ".").split(".")) if prefix else resolve_key(key)
        node = _node(path)
        if node is None:
            raise ConfigError(_unknown_key_message(path))
        if isinstance(node, Section) and isinstance(value, dict):
            out += flatten_overrides(value, path)
        else:
            out.append((path, value))
    return out


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
            key, text = item.split("=", 1)
            path = resolve_key(key.strip())
            items.append((path, parse_value(path, text)))
    else:
        items = flatten_overrides(dict(overrides))
        if parse:
            items = [(p, parse_value(p, v) if isinstance(v, str) else v) for p, v in items]
    for path, value in items:
        if path[0] in READ_ONLY:
            raise ConfigError(f"{dotted(path)} is read-only metadata and cannot be overridden")
        node = _node(path)
        target = config
        for i, part in enumerate(path[:-1]):
            if target.get(part) is None:
                parent = _node(path[: i + 1])
                target[part] = defaults(parent)  # an unused optional section: start from defaults
            target = target[part]
        if isinstance(node, Section):
            if value is None:
                if not node.optional:
                    raise ConfigError(f"{dotted(path)} cannot be none")
                target[path[-1]] = None
            elif isinstance(value, dict):  # pragma: no cover - flattened above
                target[path[-1]] = complete(value, node, path)
            else:
                raise ConfigError(f"{dotted(path)} is a section: give a dict of its keys or none")
        else:
            target[path[-1]] = check_value(path, node, value)
    return validate(config)


def describe_keys():
    """Lines ``key  (type, default)  doc`` for every key, for ``rnnreg list --keys``."""
    lines = []
    for path in leaf_paths():
        node = _node(path)
        lines.append(f"{dotted(path):45s} {node.expected():40s} {node.doc}")
    return lines
