"""Recurrent layers: the fused ones compute the input projection before the loop and only the
recurrent work inside it; the cells compute the same steps inside keras.layers.RNN."""

from keras_rnnreg.layers._cudnn import cudnn_path
from keras_rnnreg.layers.base import FusedRNN
from keras_rnnreg.layers.bidirectional import Bidirectional
from keras_rnnreg.layers.cells import GRUCell, LSTMCell, SimpleRNNCell
from keras_rnnreg.layers.fast_dropout import FastDropoutDense, FastDropoutRNN
from keras_rnnreg.layers.gru import GRU
from keras_rnnreg.layers.layer_norm import (
    LayerNormGRU,
    LayerNormGRUCell,
    LayerNormLSTM,
    LayerNormLSTMCell,
)
from keras_rnnreg.layers.lstm import LSTM
from keras_rnnreg.layers.simple_rnn import SimpleRNN

__all__ = [
    "Bidirectional", "cudnn_path", "FastDropoutDense", "FastDropoutRNN", "FusedRNN", "GRU",
    "GRUCell", "LayerNormGRU", "LayerNormGRUCell", "LayerNormLSTM", "LayerNormLSTMCell", "LSTM",
    "LSTMCell", "SimpleRNN", "SimpleRNNCell",
]
