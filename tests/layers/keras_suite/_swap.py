"""The class swap of the Keras suite: ``keras.src.layers`` with our recurrent layers in place of
Keras' ones, as the copied tests see it under the name ``layers``.

* ``ours``: SimpleRNN, LSTM, GRU and Bidirectional are keras_rnnreg's;
* ``ours_in_keras_bidirectional``: the same layers inside ``keras.layers.Bidirectional``.
"""

import types

from keras.src import layers as keras_layers

from keras_rnnreg import layers as rnnreg_layers

SWAPPED = ["SimpleRNN", "LSTM", "GRU", "Bidirectional"]


def _namespace(bidirectional):
    names = {name: getattr(keras_layers, name) for name in dir(keras_layers) if name[0] != "_"}
    names.update({name: getattr(rnnreg_layers, name) for name in SWAPPED})
    names["Bidirectional"] = bidirectional
    return types.SimpleNamespace(**names)


ours = _namespace(rnnreg_layers.Bidirectional)
ours_in_keras_bidirectional = _namespace(keras_layers.Bidirectional)
