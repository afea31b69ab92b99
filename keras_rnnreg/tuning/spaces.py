"""Search spaces as data: name -> list of hyperparameters, each tied to a configuration key.

Kept apart from the graph code (:mod:`keras_rnnreg.tuning.hypermodels` turns them into
``hp.Choice`` / ``hp.Float`` calls and zoo overrides). An entry::

    {"name": "sigma_rec", "key": "model.recurrent_init.stddev", "type": "choice",
     "values": [0.1, 0.01, 0.001]}

``type``: ``"choice"`` (``values``), ``"float"`` (``min``, ``max``, ``sampling`` "linear" / "log"),
``"int"`` (``min``, ``max``, ``step``). ``requires``: the configuration section that must be
present (not None) for the entry to apply, e.g. ``"regularization.weight_noise"``: a noise range
only tunes models that have weight noise. Keys under ``data.batch_size`` and ``training.epochs``
are drawn in ``HyperModel.fit`` (KerasTuner's convention), everything else in ``build``.

``NOISE_STUDY_TABLE_2`` is the noise study's Table 2 (Appendix B: "for each of the eight RNN
models ... we generate 50 experiments with model hyper parameters chosen from the ranges given in
Tab. 2"). Readings of the garbled ranges: the first σ row ("{1e3, 1, 1e4}") is W_in's σ and is
read as {1e-3, 1e-4}; the regularizer range "[10e2, 10e4]" as λ ∈ [1e-4, 1e-2] (log-uniform);
"Dropout [0.0, 1.0]" as the DropConnect rate (drop probability, Sec. 10.3) in [0, 0.95] (rate 1
leaves no recurrent weight; Appendix B's largest is MuseData's 0.93), with the scaling of the
preset being tuned (classic for RNN-DO / RNN-DOS); the noise σ ∈ [0.01, 0.1].
"""

from keras_rnnreg.zoo import schema

__all__ = ["BEYOND_TABLE_1", "BEYOND_TABLE_1_RNN", "NOISE_STUDY_TABLE_2", "NORM_STABILIZER_GRID",
           "SPACES", "check_entry", "get"]

NOISE_STUDY_TABLE_2 = [
    {"name": "sigma_in", "key": "model.kernel_init.stddev", "type": "choice",
     "values": [1e-3, 1e-4]},
    {"name": "sigma_rec", "key": "model.recurrent_init.stddev", "type": "choice",
     "values": [0.1, 0.01, 0.001]},
    {"name": "sparsify", "key": "model.recurrent_init.connections", "type": "choice",
     "values": [15, 25, 50], "also": ["model.kernel_init.connections"]},
    {"name": "rho", "key": "model.recurrent_init.radius", "type": "choice",
     "values": [0.9, 1.0, 1.1]},
    {"name": "regularizer", "key": "regularization.weight_penalty.kind", "type": "choice",
     "values": ["l1", "l2"], "requires": "regularization.weight_penalty"},
    {"name": "lambda", "key": "regularization.weight_penalty.strength", "type": "float",
     "min": 1e-4, "max": 1e-2, "sampling": "log", "requires": "regularization.weight_penalty"},
    {"name": "dropconnect_rate", "key": "regularization.dropconnect.rate", "type": "float",
     "min": 0.0, "max": 0.95, "requires": "regularization.dropconnect"},
    {"name": "noise_stddev", "key": "regularization.weight_noise.stddev", "type": "float",
     "min": 0.01, "max": 0.1, "requires": "regularization.weight_noise"},
    {"name": "momentum", "key": "optimizer.momentum", "type": "choice",
     "values": [0.9, 0.95, 0.99]},
    {"name": "step_rate", "key": "optimizer.learning_rate", "type": "choice",
     "values": [1e-2, 1e-3, 1e-4]},
    {"name": "batch_size", "key": "data.batch_size", "type": "choice", "values": [27, 81]},
]

# The norm-stabilizer paper's grid for SRNNs (Sec. 2.1: "a grid search across cost weight,
# gradient clipping, and learning rate"; Table 2's values).
NORM_STABILIZER_GRID = [
    {"name": "beta", "key": "regularization.norm_stabilizer.beta", "type": "choice",
     "values": [0.0, 50.0, 500.0], "requires": "regularization.norm_stabilizer"},
    {"name": "learning_rate", "key": "optimizer.learning_rate", "type": "choice",
     "values": [0.1, 0.01]},
    {"name": "clipping", "key": "optimizer.global_clipnorm", "type": "choice",
     "values": [1.0, 1e6]},
]

# Beyond Table 1 (zoo/beyond_table1.toml): zoneout rates (Krueger et al. 2016), AR α and TAR β
# (Merity et al. 2017) and the learning rate. No paper searched these on the polyphonic benchmarks:
# the ranges are ours, around the published settings (zoneout (0.5, 0.05) on char-PTB; AWD-LSTM's
# α = 2, β = 1). Each entry tunes only a model that has its regularizer (``requires``);
# ``zoneout_cell`` is the LSTM's memory-cell rate (on another cell it is a configuration conflict:
# use ``beyond_table1_rnn``, without it).
BEYOND_TABLE_1 = [
    {"name": "zoneout_cell", "key": "regularization.zoneout.cell", "type": "float",
     "min": 0.0, "max": 0.7, "requires": "regularization.zoneout"},
    {"name": "zoneout_hidden", "key": "regularization.zoneout.hidden", "type": "float",
     "min": 0.0, "max": 0.5, "requires": "regularization.zoneout"},
    {"name": "ar_alpha", "key": "regularization.activation_regularization.alpha",
     "type": "choice", "values": [0.0, 0.5, 1.0, 2.0, 4.0],
     "requires": "regularization.activation_regularization"},
    {"name": "tar_beta", "key": "regularization.temporal_activation_regularization.beta",
     "type": "choice", "values": [0.0, 0.5, 1.0, 2.0],
     "requires": "regularization.temporal_activation_regularization"},
    {"name": "learning_rate", "key": "optimizer.learning_rate", "type": "float",
     "min": 1e-4, "max": 1e-2, "sampling": "log"},
]
BEYOND_TABLE_1_RNN = [e for e in BEYOND_TABLE_1 if e["name"] != "zoneout_cell"]

SPACES = {"noise_study_table2": NOISE_STUDY_TABLE_2, "norm_stabilizer_grid": NORM_STABILIZER_GRID,
          "beyond_table1": BEYOND_TABLE_1, "beyond_table1_rnn": BEYOND_TABLE_1_RNN}

FIT_KEYS = ("data.batch_size", "training.epochs")
TYPES = ("choice", "float", "int")


def get(name_or_entries):
    """A space by name, or a list of entries as given (checked)."""
    if isinstance(name_or_entries, str):
        if name_or_entries not in SPACES:
            raise ValueError(f"unknown search space {name_or_entries!r}; expected one of "
                             f"{sorted(SPACES)}")
        entries = SPACES[name_or_entries]
    else:
        entries = list(name_or_entries)
    for entry in entries:
        check_entry(entry)
    return entries


def check_entry(entry):
    where = f"search-space entry {entry.get('name', entry)!r}"
    for field in ("name", "key", "type"):
        if field not in entry:
            raise ValueError(f"{where}: missing {field!r}")
    if entry["type"] not in TYPES:
        raise ValueError(f"{where}: type={entry['type']!r}; expected one of {TYPES}")
    if entry["type"] == "choice" and not entry.get("values"):
        raise ValueError(f"{where}: a 'choice' needs 'values'")
    if entry["type"] in ("float", "int") and ("min" not in entry or "max" not in entry):
        raise ValueError(f"{where}: a {entry['type']!r} range needs 'min' and 'max'")
    for key in [entry["key"], *entry.get("also", [])]:
        schema.resolve_key(key)  # ConfigError for an unknown key
    return entry
