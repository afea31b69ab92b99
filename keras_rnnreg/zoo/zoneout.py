"""Presets of Krueger et al. 2016, "Zoneout: Regularizing RNNs by Randomly Preserving Hidden
Activations" (arXiv 1606.01305): the character-level Penn Treebank LSTM and its baselines.

Read from the authors' reference code (no copy of the paper is at hand),
github.com/teganmaharaj/zoneout at 07a3ef2: its README (the char-PTB commands and "We set state of
the art on character-level Penn Treebank with 1.27 BPC") and the parameters of its zoneout run,
``drop_prob_cells=0.5_drop_prob_states=0.95.4/exp_params.txt``.

* ``ptb_char_lstm_zoneout``: one LSTM layer of 1000 units, 50 one-hot characters in, softmax out,
  sequences of 100, batch 32, Adam with learning rate 0.002, clipping 1, orthogonal
  initialisation, zero biases, early stopping after 25 epochs without improvement (of the
  validation NLL; we monitor the validation bits per character, the same ordering), within 2000
  epochs; zoneout 0.5 on the memory cells and 0.05 on the hidden states. Paper number: 1.27 test
  BPC (the README's).
* ``ptb_char_lstm_zoneout_baseline`` (unregularized), ``_wn`` (weight noise 0.075) and ``_ns``
  (norm-stabilizer, 50 on the hidden states): the README's baselines, same network and schedule,
  with **no paper number here** (the README gives none; we do not quote the paper's table).

Our readings:

* *Zoneout rates.* The README warns "Currently zoneout probabilities are (1-zoneout_probability)":
  ``drop_prob_states=0.95`` is a zoneout rate of 0.05 on h, ``drop_prob_cells=0.5`` one of 0.5 on
  c, as the README's command (``--z_prob_cells=0.5 --z_prob_states=0.05``) says.
* *Clipping.* The script composes ``Adam`` then ``StepClipping(1)`` (Blocks), which rescales
  Adam's *step* to a global norm of at most 1; Keras clips the gradient before the optimizer. We
  use ``global_clipnorm=1``, the usual reading of "gradient clipping 1", not the same operation.
* *Initialisation.* "ortho" for the input, recurrent and output weights (Blocks'
  ``OrthogonalInitialization``; Keras' ``Orthogonal`` for each, non-square ones included), zero
  biases; Keras' LSTM adds 1 to the forget-gate bias (``unit_forget_bias``), the script does not
  say, so ours keeps Keras' default.
* *Weight noise 0.075.* Blocks' ``apply_noise`` adds Gaussian noise of that standard deviation to
  every weight of the graph, one draw per update: ours is additive, per sequence (one draw per
  training step), on the input and recurrent kernels of the LSTM; the output layer stays clean.
* *Norm-stabilizer 50.* ``--norm_cost_coeff=50`` with ``penalty=hids``: β = 50 on the hidden
  states, the cost of :class:`keras_rnnreg.regularizers.NormStabilizer` (mean over the batch of the
  squared successive norm differences averaged over the T − 1 pairs), output tanh kept.
* *Not ours to reproduce.* The script's ``augment`` (a random offset for cutting the training text
  into sequences) is not implemented; the data are ours (``keras_rnnreg.data.ptb``: 50 symbols).
  The training split of character-level PTB is the user's to provide (``rnnreg data fetch ptb``;
  it is not available on the project's machines), as for the norm-stabilizer presets.
"""

import keras

from keras_rnnreg import perturbations, regularizers
from keras_rnnreg.zoo._registry import register
from keras_rnnreg.zoo.schema import keras_object

__all__ = ["PRESETS", "REFERENCE_CODE", "ZONEOUT"]

PAPER = "Krueger et al., Zoneout: Regularizing RNNs by Randomly Preserving Hidden Activations"
REFERENCE_CODE = ("github.com/teganmaharaj/zoneout@07a3ef2: README.md and "
                  "drop_prob_cells=0.5_drop_prob_states=0.95.4/exp_params.txt")
#: (cell rate, hidden rate) of the char-PTB zoneout run (README; exp_params.txt as 1 - p).
ZONEOUT = (0.5, 0.05)

_ORTHOGONAL = keras_object(keras.initializers.Orthogonal)
BASE = {
    "task": "ptb",
    "model": {"cell": "lstm", "units": 1000, "layers": 1, "input_dim": 50, "output_dim": 50,
              "output_activation": "softmax", "kernel_init": _ORTHOGONAL,
              "recurrent_init": _ORTHOGONAL, "output_init": _ORTHOGONAL},
    "optimizer": keras_object(keras.optimizers.Adam, learning_rate=0.002, global_clipnorm=1.0),
    "data": {"source": "ptb", "batch_size": 32, "seq_len": 100},
    "training": {"epochs": 2000, "patience": 25, "monitor": "val_bits_per_character",
                 "mode": "min"},
}
_READINGS = ("settings from the reference code (" + REFERENCE_CODE + "); clipping read as "
             "global_clipnorm=1 (the script clips Adam's step); orthogonal input / recurrent / "
             "output weights; the training split is the user's")


def _preset(description, regularization, value, notes):
    return {**BASE, "description": description, "regularization": regularization,
            "paper": {"reference": PAPER, "table": "char-level PTB (reference code README)",
                      "metric": "test bits per character", "value": value,
                      "notes": f"{notes}; {_READINGS}"}}


PRESETS = {
    "ptb_char_lstm_zoneout": _preset(
        "1000-unit LSTM on char-PTB, zoneout 0.5 on cells and 0.05 on hidden states",
        {"zoneout": {"cell": ZONEOUT[0], "hidden": ZONEOUT[1]}}, 1.27,
        "1.27 BPC: the README's char-PTB number; rates from the README's command "
        "(exp_params.txt stores them as 1 - p)"),
    "ptb_char_lstm_zoneout_baseline": _preset(
        "1000-unit LSTM on char-PTB, unregularized (the zoneout paper's baseline)", {}, None,
        "no paper number here (the README gives none for the baseline)"),
    "ptb_char_lstm_zoneout_wn": _preset(
        "1000-unit LSTM on char-PTB, weight noise 0.075 (the zoneout paper's baseline)",
        {"weight_noise": keras_object(perturbations.WeightNoise, stddev=0.075, mode="additive",
                                      per="sequence", target="both")}, None,
        "no paper number here (the README gives none for the baseline); weight noise additive "
        "on the LSTM's input and recurrent kernels, one draw per step"),
    "ptb_char_lstm_zoneout_ns": _preset(
        "1000-unit LSTM on char-PTB, norm-stabilizer β = 50 on h (the zoneout paper's baseline)",
        {"norm_stabilizer": keras_object(regularizers.NormStabilizer, beta=50.0, on="hidden")},
        None, "no paper number here (the README gives none for the baseline); β = 50 on the "
        "hidden states (penalty=hids), output tanh kept"),
}

for _name, _config in PRESETS.items():
    register(_name, _config)
