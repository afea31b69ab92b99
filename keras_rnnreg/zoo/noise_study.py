"""Presets of the noise study, "Regularizing Recurrent Networks" (../shared/papers/noise_study.txt).

Forty names, ``{jsb, nottingham, pianomidi, musedata}_{model}`` with the ten models of Table 1
(Sec. 8-10): ``rnn_plain`` (plain tanh RNN, well initialised: sparse init, spectral radius,
Sec. 6.1), ``rnn_fd`` (fast dropout, Sec. 6.5, Bayer et al. 2013), ``rnn_nbr`` (L1 / L2 on the
input, recurrent and output weights, Sec. 7), ``rnn_n`` / ``rnn_ns`` (additive Gaussian noise on
the recurrent weights per timestep / per sequence, Sec. 8.1, Eq. 11), ``rnn_mn`` / ``rnn_mns``
(multiplicative noise, Eq. 12), ``rnn_do`` / ``rnn_dos`` (DropConnect on the recurrent weights,
Sec. 9), ``rnn_ff`` (noise on the input-to-hidden weights per timestep, Sec. 8.2).

Every network (Sec. 10.2): 88 inputs, one tanh hidden layer, 88 sigmoid outputs; loss: the
cross-entropy summed over the 88 notes of a timestep and averaged over timesteps, so the number is
Table 1's NLL per timestep in nats. Optimizer: RMSprop with momentum and decay 0.9 — climin's
(:class:`keras_rnnreg.optimizers.CliminRMSprop`) for RNN-DO / RNN-DOS, Keras' for the others (see
the readings below). Data (Sec. 10.1): training and validation split into chunks of 100
timesteps, front-padded; test sequences run whole.

The hyperparameters are the four tables of Appendix B (in Table 1's column order: JSB,
Nottingham, Piano-midi, MuseData; 200, 200, 100, 600 hidden units). **Our readings of the
garbled or ambiguous rows**:

* *"Initialization σ for"* — two rows with no matrix named. The first row's values (1e-3, 1e-4)
  are W_in's: Sec. 6.2 says "the input-to-hidden weights are drawn with a small standard
  deviation of about 0.001"; the second row (0.1, 0.01, 0.001) is W_rec's. Table 2's first
  range "{1e3, 1, 1e4}" is read as {1e-3, 1e-4}.
* *"Sparsify 15/25/50"* — connections per unit (Martens 2010): every unit has exactly that many
  nonzero incoming weights, in W_in and in W_rec (:class:`keras_rnnreg.initializers.Sparse`).
* *"ρ limit"* — the spectral radius the recurrent matrix is rescaled to at initialization
  (:class:`~keras_rnnreg.initializers.SpectralRadius`); it is not enforced during training
  (``regularization.spectral_radius_limit`` can add that constraint).
* *"λ 3.93"* (JSB; ``APPENDIX_B[...]["penalty"]``) — outside Table 2's range "[10e-2, 10e-4]"
  as printed, but all four lie between 2 and 4, so they are read as −log10 λ (JSB: λ = 10^-3.93
  ≈ 1.17e-4), all inside [1e-4, 1e-2]. Keras' L2 is λ Σw² (no ½), added to the per-timestep NLL.
* *"Dropout 0.92"* (RNN-DO, RNN-DOS) — read as the paper defines p for Fig. 10 (Sec. 10.3):
  the "probability that an incoming recurrent weight is set to zero", i.e. the DropConnect rate,
  with the classic dropout scaling of Hinton et al. (2012) and Wan et al. (2013): unscaled masks
  in training, the expected matrix (1 − p) W at test time (``DropConnect(scale="inference")``),
  and climin's RMSprop (``optimizer.class_name = "CliminRMSprop"``, the library whose vocabulary
  Table 2 uses). Each of the three matters (measured in docs/results.md, "Nottingham RNN-DO"):
  the keep reading (rate 1 − p) does not train on Nottingham; inverted scaling makes JSB's
  p = 0.92 overflow to NaN at the first update; Keras' RMSprop (its mean-square accumulator
  starts at 0, climin's at 1) stops Nottingham RNN-DO at 4.44 instead of 3.47. The other rows
  keep Keras' RMSprop, with which they were measured. ``--set
  regularization.dropconnect.rate=0.08 --set regularization.dropconnect.scale=true --set
  optimizer.class_name=RMSprop`` runs the earlier keep reading. JSB's RNN-FF cell of that row is
  blank (no dropout).
* *"Noise σ"* — the standard deviation of the weight noise: additive for RNN-N / RNN-NS, the σ of
  (1 + σε) for RNN-MN / RNN-MNS. RNN-FF: additive (Eq. 13) noise on the input-to-hidden weights,
  per timestep ("we only work with per-timestep noise model for feed-forward layers"); the
  hidden-to-output weights stay clean.
* Per-timestep noise draws one weight matrix per timestep shared by the sequences of a batch;
  per-sequence noise one matrix per training step (Sec. 8.1; keras_rnnreg.perturbations).
* *RNN-plain and RNN-FD* are not in Appendix B (its tables cover the eight other models). We
  picked from Table 2's ranges (``UNLISTED_INIT``); for the optimizer (``UNLISTED_OPTIMIZER``),
  the settings most of the dataset's eight tuned models share, and for JSB those of its RNN-NS
  column (step rate 1e-3 made Nottingham's training loss climb after a dozen epochs). RNN-FD:
  the same, with the dropout rates of ``FAST_DROPOUT_RATES`` (Table 2's "Dropout [0, 1]"). The
  output layer (not described) is Glorot-uniform initialised with zero bias, in every model.
* *RNN-FD at test time* — the paper does not say. We predict with the same deterministic
  moment propagation the model was trained with (``regularization.fast_dropout.inference =
  "marginal"``): on JSB the mean network (``"mean"``, Wang & Manning's weight-scaled net) is
  over-confident and scored about 1 nat worse in our runs.
* Epochs and early stopping are not given in the paper. We train up to ``training.epochs`` and
  keep the weights of the best validation NLL, stopping after ``training.patience`` epochs without
  improvement.

The RNN-plain and RNN-FD numbers of Table 1 are those of Bayer et al. (2013), who report the same
values for their RNN and fast-dropout RNN.
"""

import keras

from keras_rnnreg import initializers, perturbations
from keras_rnnreg.optimizers import CliminRMSprop
from keras_rnnreg.zoo._registry import register
from keras_rnnreg.zoo.schema import keras_object

__all__ = ["APPENDIX_B", "DATASETS", "MODELS", "TABLE_1", "hyperparameters", "preset"]

PAPER = "Regularizing Recurrent Networks (noise study)"
DATASETS = {
    # name: (file under the data root, hidden units, Table 1 column)
    "jsb": ("JSB_Chorales.mat", 200, "JSB Chorales"),
    "nottingham": ("Nottingham.mat", 200, "Nottingham"),
    "pianomidi": ("Piano_midi.mat", 100, "Piano-midi.de"),
    "musedata": ("MuseData.mat", 600, "MuseData"),
}
MODELS = ("rnn_plain", "rnn_fd", "rnn_nbr", "rnn_n", "rnn_ns", "rnn_mn", "rnn_mns", "rnn_do",
          "rnn_dos", "rnn_ff")

# Table 1: test NLL per timestep (nats).
TABLE_1 = {
    "rnn_plain": (8.58, 3.43, 7.58, 6.99),
    "rnn_fd": (8.01, 3.09, 7.39, 6.75),
    "rnn_nbr": (8.83, 3.70, 7.78, 8.62),
    "rnn_n": (8.92, 3.56, 7.66, 8.40),
    "rnn_ns": (8.96, 3.58, 7.74, 8.40),
    "rnn_mn": (8.64, 3.51, 7.71, 8.13),
    "rnn_mns": (8.64, 3.50, 7.70, 8.12),
    "rnn_do": (8.48, 3.49, 7.65, 7.98),
    "rnn_dos": (8.55, 3.57, 7.67, 8.00),
    "rnn_ff": (8.67, 3.54, 7.69, 8.10),
}

# Appendix B, one row per table row, columns RNN-NBR, -N, -NS, -MN, -MNS, -DO, -DOS, -FF.
_COLUMNS = ("rnn_nbr", "rnn_n", "rnn_ns", "rnn_mn", "rnn_mns", "rnn_do", "rnn_dos", "rnn_ff")
APPENDIX_B = {
    "jsb": {
        "sigma_in": (1e-4, 1e-3, 1e-3, 1e-4, 1e-4, 1e-3, 1e-3, 1e-3),
        "sigma_rec": (0.1, 0.1, 0.001, 0.01, 0.001, 0.01, 0.001, 0.1),
        "sparsify": (15, 50, 50, 50, 25, 25, 50, 15),
        "rho": (1.1, 0.9, 1.0, 0.9, 0.9, 1.0, 1.0, 0.9),
        "penalty": ("l2", 3.93),
        "dropout": {"rnn_do": 0.92, "rnn_dos": 0.56},
        "noise": {"rnn_n": 0.01, "rnn_ns": 0.04, "rnn_mn": 0.06, "rnn_mns": 0.01, "rnn_ff": 0.09},
        "momentum": (0.9, 0.99, 0.90, 0.95, 0.90, 0.95, 0.95, 0.90),
        "step_rate": (1e-3, 1e-4, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4),
        "batch_size": (81, 27, 27, 81, 27, 81, 81, 81),
    },
    "nottingham": {
        "sigma_in": (1e-4, 1e-4, 1e-3, 1e-4, 1e-4, 1e-3, 1e-3, 1e-4),
        "sigma_rec": (0.1, 0.1, 0.01, 0.001, 0.001, 0.01, 0.1, 0.001),
        "sparsify": (15, 25, 25, 15, 25, 15, 25, 15),
        "rho": (0.9, 1.1, 1.0, 1.0, 1.0, 0.9, 1.1, 1.1),
        "penalty": ("l2", 3.77),
        "dropout": {"rnn_do": 0.36, "rnn_dos": 0.78},
        "noise": {"rnn_n": 0.01, "rnn_ns": 0.02, "rnn_mn": 0.02, "rnn_mns": 0.06, "rnn_ff": 0.05},
        "momentum": (0.95, 0.95, 0.95, 0.95, 0.95, 0.90, 0.90, 0.95),
        "step_rate": (1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-3, 1e-3, 1e-4),
        "batch_size": (81, 27, 27, 27, 27, 81, 81, 27),
    },
    "pianomidi": {
        "sigma_in": (1e-4, 1e-3, 1e-3, 1e-4, 1e-4, 1e-3, 1e-4, 1e-4),
        "sigma_rec": (0.001, 0.1, 0.001, 0.001, 0.1, 0.001, 0.01, 0.1),
        "sparsify": (15, 25, 15, 15, 15, 15, 25, 50),
        "rho": (0.9, 1.0, 1.0, 1.0, 0.9, 1.0, 0.9, 0.9),
        "penalty": ("l2", 3.52),
        "dropout": {"rnn_do": 0.69, "rnn_dos": 0.51},
        "noise": {"rnn_n": 0.05, "rnn_ns": 0.04, "rnn_mn": 0.04, "rnn_mns": 0.02, "rnn_ff": 0.08},
        "momentum": (0.95, 0.95, 0.99, 0.90, 0.95, 0.90, 0.95, 0.90),
        "step_rate": (1e-4, 1e-4, 1e-4, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4),
        "batch_size": (27, 27, 81, 81, 81, 27, 81, 81),
    },
    "musedata": {
        "sigma_in": (1e-3, 1e-4, 1e-4, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4),
        "sigma_rec": (0.01, 0.01, 0.1, 0.1, 0.1, 0.001, 0.1, 0.001),
        "sparsify": (25, 50, 15, 50, 50, 50, 25, 15),
        "rho": (1.0, 0.9, 1.1, 1.0, 1.0, 1.1, 1.0, 0.9),
        "penalty": ("l1", 3.80),
        "dropout": {"rnn_do": 0.93, "rnn_dos": 0.80},
        "noise": {"rnn_n": 0.02, "rnn_ns": 0.02, "rnn_mn": 0.04, "rnn_mns": 0.09, "rnn_ff": 0.01},
        "momentum": (0.90, 0.99, 0.95, 0.95, 0.90, 0.90, 0.90, 0.95),
        "step_rate": (1e-4,) * 8,
        "batch_size": (81, 27, 27, 81, 81, 27, 81, 81),
    },
}

# Our picks for RNN-plain and RNN-FD, which Appendix B does not list (module docstring).
UNLISTED_INIT = {"sigma_in": 1e-3, "sigma_rec": 0.1, "sparsify": 15, "rho": 1.1}
UNLISTED_OPTIMIZER = {
    "jsb": {"step_rate": 1e-3, "momentum": 0.9, "batch_size": 27},
    "nottingham": {"step_rate": 1e-4, "momentum": 0.95, "batch_size": 27},
    "pianomidi": {"step_rate": 1e-4, "momentum": 0.95, "batch_size": 81},
    "musedata": {"step_rate": 1e-4, "momentum": 0.9, "batch_size": 81},
}
FAST_DROPOUT_RATES = {"input_rate": 0.2, "recurrent_rate": 0.5, "output_rate": 0.5}
FAST_DROPOUT_INFERENCE = "marginal"  # see "RNN-FD at test time" above

# Training schedule (not in the paper): maximum epochs and early-stopping patience per dataset.
SCHEDULE = {
    "jsb": {"epochs": 1000, "patience": 40},
    "nottingham": {"epochs": 500, "patience": 15},  # 200 stopped RNN-FD while improving (H100)
    "pianomidi": {"epochs": 500, "patience": 30},
    "musedata": {"epochs": 200, "patience": 15},
}


def hyperparameters(dataset, model):
    """The hyperparameters of one cell of Table 1 as a flat dict (Appendix B, or our picks)."""
    table = APPENDIX_B[dataset]
    if model not in _COLUMNS:
        return {**UNLISTED_INIT, **UNLISTED_OPTIMIZER[dataset],
                "source": "not listed in Appendix B: picked from Table 2's ranges"}
    j = _COLUMNS.index(model)
    keys = ("sigma_in", "sigma_rec", "sparsify", "rho", "momentum", "step_rate", "batch_size")
    hp = {key: table[key][j] for key in keys}
    if model == "rnn_nbr":
        hp["penalty"], hp["neg_log10_lambda"] = table["penalty"]
    for key in ("dropout", "noise"):  # dropout: the printed p, the drop probability (docstring)
        if model in table[key]:
            hp[key] = table[key][model]
    hp["source"] = "Appendix B"
    return hp


def _regularization(model, hp):
    reg = {}
    if model == "rnn_nbr":
        reg["weight_penalty"] = {"kind": hp["penalty"],
                                 "strength": 10.0 ** (-hp["neg_log10_lambda"])}
    elif model in ("rnn_n", "rnn_ns", "rnn_mn", "rnn_mns", "rnn_ff"):
        reg["weight_noise"] = keras_object(
            perturbations.WeightNoise, stddev=hp["noise"],
            mode="multiplicative" if model in ("rnn_mn", "rnn_mns") else "additive",
            per="sequence" if model in ("rnn_ns", "rnn_mns") else "timestep",
            target="input" if model == "rnn_ff" else "recurrent")
    elif model in ("rnn_do", "rnn_dos"):
        reg["dropconnect"] = keras_object(
            perturbations.DropConnect, rate=hp["dropout"],
            per="sequence" if model == "rnn_dos" else "timestep", scale="inference")
    elif model == "rnn_fd":
        reg["fast_dropout"] = {**FAST_DROPOUT_RATES, "inference": FAST_DROPOUT_INFERENCE}
    return reg


def preset(dataset, model):
    """The (partial) config of ``<dataset>_<model>``."""
    filename, units, column = DATASETS[dataset]
    hp = hyperparameters(dataset, model)
    value = TABLE_1[model][list(DATASETS).index(dataset)]
    notes = [f"hyperparameters: {hp['source']}"]
    if "neg_log10_lambda" in hp:
        lam = hp["neg_log10_lambda"]
        notes.append(f"λ printed as {lam}, read as 10^-{lam}")
    if "dropout" in hp:
        notes.append(f"'Dropout {hp['dropout']}' read as the drop probability p (Sec. 10.3), "
                     "classic scaling ((1 - p) W at test time), climin's RMSprop")
    return {
        "task": "polyphonic",
        "description": f"{model.replace('_', '-').upper()} on {column} (noise study, Table 1)",
        "model": {
            # tanh, 88 inputs, 88 sigmoid outputs, Glorot-uniform output weights: the defaults
            "cell": "fast_dropout" if model == "rnn_fd" else "simple_rnn", "units": units,
            "kernel_init": keras_object(initializers.Sparse, connections=hp["sparsify"],
                                        stddev=hp["sigma_in"]),
            "recurrent_init": keras_object(
                initializers.SpectralRadius, radius=hp["rho"],
                base=keras_object(initializers.Sparse, connections=hp["sparsify"],
                                  stddev=hp["sigma_rec"])),
        },
        "regularization": _regularization(model, hp),
        "optimizer": keras_object(
            CliminRMSprop if model in ("rnn_do", "rnn_dos") else keras.optimizers.RMSprop,
            learning_rate=hp["step_rate"], momentum=hp["momentum"], rho=0.9),
        "data": {"source": f"polyphonic/{filename}",
                 "batch_size": hp["batch_size"], "chunk": 100},
        "training": {**SCHEDULE[dataset], "monitor": "val_nll_per_timestep", "mode": "min"},
        "paper": {"reference": PAPER, "metric": "test NLL per timestep (nats)", "value": value,
                  "table": f"Table 1, column {column}; hyperparameters Appendix B",
                  "notes": "; ".join(notes)},
    }


for _dataset in DATASETS:
    for _model in MODELS:
        register(f"{_dataset}_{_model}", preset(_dataset, _model))
