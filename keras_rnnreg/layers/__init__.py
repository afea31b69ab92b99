"""Fused recurrent layers: the input projection before the loop, only the recurrent work inside."""

from keras_rnnreg.layers.base import FusedRNN
from keras_rnnreg.layers.lstm import LSTM
from keras_rnnreg.layers.simple_rnn import SimpleRNN

__all__ = ["FusedRNN", "LSTM", "SimpleRNN"]
