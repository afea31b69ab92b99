"""Presets of Krueger & Memisevic, "Regularizing RNNs by Stabilizing Activations"
(../shared/papers/norm_stabilizer.txt): character-level PTB (Tables 1-3), TIMIT (Tables 4-5) and
the adding problem (Sec. 2.3).

**Character-level Penn Treebank** (Sec. 2.1): "we use 1000/1600 units for LSTM/SRNN, and SGD with
learning rate=.1, momentum=.99, and gradient clipping=1. We train for a maximum of 1000 epochs and
use sequences of length 50 taken without overlap. When we encounter a NaN, we divide the learning
rate by 2, and restart with the previous epochs parameters." One-hot characters in (50 symbols
with the end-of-sentence symbol, ``keras_rnnreg.data.ptb``), softmax out, bits per character.

* ``ptb_lstm`` (Table 1, β = 0, standard LSTM), ``ptb_lstm_notanh`` (β = 0 with the output
  tanh removed), ``ptb_lstm_ns`` / ``ptb_lstm_ns_b50`` (β on the hidden states, output tanh
  removed "as in Gers & Schmidhuber"), ``ptb_lstm_ns_cell`` / ``ptb_lstm_ns_cell_b50`` (β on the
  memory cells, standard LSTM). Reading: the two β = 0 numbers of Table 1 are the two LSTM
  variants (the hidden-state row is the net without the output tanh, which the text says gave "a
  slight improvement").
* ``ptb_srnn_{tanh,relu,trec}`` and ``_ns`` (β = 500): Table 2's first column (lr .1, gradient
  clipping 1); its other columns are the card's overrides of ``optimizer.learning_rate`` and
  ``optimizer.global_clipnorm`` (10^6 = effectively no clipping). TRec is the zero-bias ReLU (the
  layer has no hidden bias). Reading of footnote 1 ("As in Le et al. (2015), we initialize W_hh to
  be an identity matrix in our experiments"): every SRNN, tanh included, starts from the identity.
* ``ptb_srnn_trec_ns_{state_diff,relative,l1_norm_diff,target,first_last}``: the alternative costs
  of Table 3 at β = 500 (β = 50 by override). Reading: Table 3 is on the TRec SRNN, since its
  norm-stabilizer entry at β = 500 is Table 2's TRec value (``TABLE_3``, ``TABLE_2``); the
  target norm is 5.
* Not stated: batch size (we use 32), initialisation of the input / output weights and of the
  LSTM (Keras' Glorot-uniform and orthogonal), early stopping (we keep the best validation
  epoch and stop after ``training.patience`` = 50 epochs without improvement, within the paper's
  maximum of 1000 epochs). Gradient clipping is read as clipping the global gradient norm (Blocks'
  ``StepClipping``).

**TIMIT** (Sec. 2.2): CTC, 3 bidirectional LSTM layers of 500 units per direction, 123 inputs,
61 phones + blank = 62 outputs, Adam lr .001, gradient clipping 200, early stopping after 25
epochs without improvement on the development set (we monitor its phone error rate), no beam
search (greedy decoding). The penalty is on the hidden states of every layer and direction, with
the standard output tanh. ``TABLE_4`` (averages of 5 runs) and ``TABLE_5`` (one run each,
patience 100) name the presets. Readings: weight noise is additive, on the input and recurrent
kernels of every LSTM, one draw per training step (per sequence, as Graves et al. 2013); dropout
p = .5 is applied to the outputs of every BLSTM layer (not inside the recurrence); Table 5's
"n = 999" is kept as printed (the text says "1000 hidden units"); batch size (not stated) is 32.

**Adding problem** (Sec. 2.3): length 400, "uniform initialization in [-.01,.01], learning
rate=.01, gradient clipping=1", β = 1. Readings: the IRNN of Le et al. (2015) — ReLU, W_hh the
identity (footnote 1), the other weights U[-.01, .01] — with 100 units, plain SGD and batch size
16 as Le et al.; 100,000 training sequences. The nine-seed results are the two presets' ``paper``
sections.
"""

import copy

import keras

from keras_rnnreg import perturbations, regularizers
from keras_rnnreg.zoo._registry import register
from keras_rnnreg.zoo.schema import keras_object

__all__ = ["ADDING_PRESETS", "PTB_PRESETS", "TABLE_1", "TABLE_2", "TABLE_3", "TABLE_4", "TABLE_5",
           "TIMIT_PRESETS"]

PAPER = "Krueger & Memisevic, Regularizing RNNs by Stabilizing Activations"


def _merge(base, **sections):
    """A copy of ``base`` with ``sections`` set (a dict section merged into the base's)."""
    out = copy.deepcopy(base)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------- PTB
PTB_BASE = {
    "task": "ptb",
    "model": {"cell": "lstm", "units": 1000, "input_dim": 50, "output_dim": 50,
              "output_activation": "softmax"},
    "optimizer": keras_object(keras.optimizers.SGD, learning_rate=0.1, momentum=0.99,
                              global_clipnorm=1.0),
    "data": {"source": "ptb", "batch_size": 32, "seq_len": 50},
    "training": {"epochs": 1000, "patience": 50, "monitor": "val_bits_per_character", "mode": "min",
                 "nan_restart": True},
}


def _ptb(description, table, value, model=None, ns=None, other=None, notes=""):
    reg = {"norm_stabilizer": keras_object(regularizers.NormStabilizer, **ns)} if ns else {}
    return _merge(PTB_BASE, description=description, model=model or {}, regularization=reg,
                  paper={"reference": PAPER, "table": table, "metric": "test bits per character",
                         "value": value, "other": other, "notes": notes})


# Table 1: (where β penalizes, β, test BPC); on the hidden states the output tanh is removed.
TABLE_1 = {
    "ptb_lstm": ("cell", 0, 1.49),
    "ptb_lstm_notanh": ("hidden", 0, 1.47),
    "ptb_lstm_ns_b50": ("hidden", 50, 1.41),
    "ptb_lstm_ns": ("hidden", 500, 1.39),
    "ptb_lstm_ns_cell_b50": ("cell", 50, 1.42),
    "ptb_lstm_ns_cell": ("cell", 500, 1.40),
}
PTB_PRESETS = {}
for _name, (_on, _beta, _value) in TABLE_1.items():
    _hidden = _on == "hidden"
    PTB_PRESETS[_name] = _ptb(
        f"LSTM{' without output tanh' if _hidden else ''}, β = {_beta}"
        + (f" on the {'hidden states' if _hidden else 'memory cells'}" if _beta else ""),
        f"Table 1, {'hidden-state' if _hidden else 'memory-cell'} row, β = {_beta}", _value,
        model={"lstm_output_tanh": False} if _hidden else None,
        ns={"beta": float(_beta), "on": _on} if _beta else None,
        notes="output tanh removed when the hidden states are penalized (Sec. 2.1)" * _hidden)

# Table 2: columns (lr, clipping) = (.1, 1), (.1, 1e6), (.01, 1), (.01, 1e6).
TABLE_2 = {("tanh", 0): (1.71, 1.55, 2.15, 2.15), ("tanh", 500): (1.57, 2.70, 1.79, 1.80),
           ("relu", 0): (1.78, 1.69, 1.93, 1.93), ("relu", 500): (1.74, 1.73, 1.65, 2.04),
           ("trec", 0): (1.62, 1.63, 1.95, 1.88), ("trec", 500): (1.48, 1.49, 1.56, 1.56)}
TABLE_2_COLUMNS = ((0.1, 1.0), (0.1, 1e6), (0.01, 1.0), (0.01, 1e6))

_SRNN_MODEL = {"cell": "simple_rnn", "units": 1600,
               "recurrent_init": keras_object(keras.initializers.Identity)}
for _act in ("tanh", "relu", "trec"):
    for _beta in (0, 500):
        _values = TABLE_2[(_act, _beta)]
        _other = {f"lr={lr:g}, clipping={gc:g}": v
                  for (lr, gc), v in zip(TABLE_2_COLUMNS[1:], _values[1:])}
        _name = f"ptb_srnn_{_act}" + ("_ns" if _beta else "")
        PTB_PRESETS[_name] = _ptb(
            f"SRNN ({_act}), 1600 units, identity W_hh, β = {_beta}",
            f"Table 2, {_act}, β = {_beta}, lr = .1, clipping = 1", _values[0],
            model={**_SRNN_MODEL, "activation": _act},
            ns={"beta": 500.0, "on": "hidden"} if _beta else None, other=_other,
            notes="identity recurrent initialisation (footnote 1); TRec = ReLU without hidden bias")

# Table 3: alternative costs at β = 500 (and β = 50) on the TRec SRNN.
TABLE_3 = {
    "state_diff": (1.84, 2.19),
    "norm_diff": (None, 1.48),
    "relative": (1.60, 1.50),
    "l1_norm_diff": (2.96, 3.18),
    "target": (1.49, 1.50),
    "first_last": (3.81, 1.54),
}
for _cost, (_b50, _b500) in TABLE_3.items():
    if _cost == "norm_diff":
        continue  # that is ptb_srnn_trec_ns
    PTB_PRESETS[f"ptb_srnn_trec_ns_{_cost}"] = _ptb(
        f"SRNN (TRec), alternative cost {_cost}, β = 500", f"Table 3, cost {_cost}, β = 500",
        _b500, model={**_SRNN_MODEL, "activation": "trec"},
        ns={"beta": 500.0, "on": "hidden", "cost": _cost, "target": 5.0}, other={"beta=50": _b50},
        notes="Table 3 read as on the TRec SRNN (its norm-stabilizer entry equals Table 2's TRec "
              "value)")


# -------------------------------------------------------------------------------------- TIMIT
TIMIT_BASE = {
    "task": "timit",
    "model": {"cell": "lstm", "units": 500, "layers": 3, "bidirectional": True, "input_dim": 123,
              "output_dim": 62, "output_activation": "linear"},
    "optimizer": keras_object(keras.optimizers.Adam, learning_rate=1e-3, global_clipnorm=200.0),
    "data": {"source": "TIMIT", "batch_size": 32},
    "training": {"epochs": 1000, "patience": 25, "monitor": "val_per", "mode": "min"},
}

TABLE_4 = {
    # name: (beta, weight noise sigma, dropout p, test PER, dev PER)
    "timit_blstm": (0, 0.0, 0.0, 21.8, 19.6),
    "timit_blstm_ns50": (50, 0.0, 0.0, 20.7, 18.6),
    "timit_blstm_ns": (500, 0.0, 0.0, 19.0, 16.9),
    "timit_blstm_wn": (0, 0.05, 0.0, 21.5, 19.1),
    "timit_blstm_dropout": (0, 0.0, 0.5, 21.9, 19.5),
    "timit_blstm_dropout_ns50": (50, 0.0, 0.5, 20.9, 18.5),
    "timit_blstm_dropout_ns": (500, 0.0, 0.5, 19.4, 17.0),
    "timit_blstm_dropout_wn": (0, 0.05, 0.5, 21.1, 18.9),
}
TABLE_5 = {
    # name: (units, beta, weight noise sigma, test PER, dev PER)
    "timit_blstm750_wn": (750, 0, 0.05, 21.9, 19.6),
    "timit_blstm750_ns500": (750, 500, 0.0, 18.8, 16.8),
    "timit_blstm750_ns1000": (750, 1000, 0.0, 18.6, 16.2),
    "timit_blstm750_ns1500": (750, 1500, 0.0, 18.0, 16.2),
    "timit_blstm999_wn": (999, 0, 0.05, 21.8, 19.1),
    "timit_blstm999_ns500": (999, 500, 0.0, 19.5, 17.4),
    "timit_blstm999_ns1000": (999, 1000, 0.0, 17.5, 16.7),
    "timit_blstm999_ns1500": (999, 1500, 0.0, 18.6, 16.7),
}


def _timit(description, table, test, dev, beta, sigma, p, notes, **sections):
    reg = {"dropout": p}
    if beta:
        reg["norm_stabilizer"] = keras_object(regularizers.NormStabilizer, beta=float(beta),
                                              on="hidden")
    if sigma:
        reg["weight_noise"] = keras_object(perturbations.WeightNoise, stddev=sigma,
                                           mode="additive", per="sequence", target="both")
    return _merge(TIMIT_BASE, description=description, regularization=reg, **sections,
                  paper={"reference": PAPER, "table": table, "metric": "test phone error rate (%)",
                         "value": test, "other": {"dev": dev}, "notes": notes})


TIMIT_PRESETS = {
    name: _timit(f"3x500 BLSTM + CTC, β = {beta}, σ = {sigma}, p = {p}",
                 f"Table 4, β = {beta}, σ = {sigma}, p = {p} (mean of 5 runs)", test, dev, beta,
                 sigma, p, "weight noise additive on input and recurrent kernels, per sequence; "
                 "dropout between layers")
    for name, (beta, sigma, p, test, dev) in TABLE_4.items()}
for _name, (_units, _beta, _sigma, _test, _dev) in TABLE_5.items():
    TIMIT_PRESETS[_name] = _timit(
        f"3x{_units} BLSTM + CTC, β = {_beta}, σ = {_sigma}, patience 100",
        f"Table 5, n = {_units}, β = {_beta} (one run)", _test, _dev, _beta, _sigma, 0.0,
        "n = 999 as printed in Table 5 (the text says 1000 units)",
        model={"units": _units}, training={"patience": 100})


# ------------------------------------------------------------------------------------- adding
ADDING_BASE = {
    "task": "adding",
    "model": {
        "cell": "simple_rnn", "units": 100, "activation": "relu", "input_dim": 2, "output_dim": 1,
        "output_activation": "linear", "readout": "last",
        "kernel_init": keras_object(keras.initializers.RandomUniform, minval=-0.01, maxval=0.01),
        "recurrent_init": keras_object(keras.initializers.Identity),
        "output_init": keras_object(keras.initializers.RandomUniform, minval=-0.01, maxval=0.01),
    },
    "optimizer": keras_object(keras.optimizers.SGD, learning_rate=0.01, momentum=0.0,
                              global_clipnorm=1.0),
    "data": {"source": "generated", "batch_size": 16, "length": 400, "train_size": 100_000,
             "valid_size": 1_000, "test_size": 10_000},
    "training": {"epochs": 100, "patience": 20, "monitor": "val_loss", "mode": "min"},
}


def _adding(description, value, other, **regularization):
    return _merge(ADDING_BASE, description=f"IRNN on the adding problem, length 400, {description}",
                  regularization=regularization,
                  paper={"reference": PAPER, "table": "Sec. 2.3 (mean over 9 seeds)",
                         "metric": "test MSE", "value": value, "other": other,
                         "notes": "identity W_hh, other weights U[-.01, .01]; 100 units, batch "
                                  "16, plain SGD (Le et al.)"})


ADDING_PRESETS = {
    "adding_irnn": _adding("no penalty", 0.105, {"seeds_below_1/12": "4/9",
                                                 "seeds_no_better_than_constant": "4/9"}),
    "adding_irnn_ns": _adding(
        "norm-stabilizer β = 1", 0.059, {"seeds_below_1/12": "8/9"},
        norm_stabilizer=keras_object(regularizers.NormStabilizer, beta=1.0, on="hidden")),
}

for _name, _config in {**PTB_PRESETS, **TIMIT_PRESETS, **ADDING_PRESETS}.items():
    register(_name, _config)
