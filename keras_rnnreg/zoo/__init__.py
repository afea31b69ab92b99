"""The model zoo: every configuration of the two papers, by name.

```python
from keras_rnnreg import zoo

zoo.list_models("jsb_*")                  # ['jsb_rnn_do', 'jsb_rnn_dos', ...]
zoo.get_config("jsb_rnn_ns")              # plain dict: model, regularization, optimizer, data,
                                          # training, paper (reference, table, number, readings)
model = zoo.build("timit_blstm_ns")       # compiled ZooModel (a keras.Model), ready for fit
model.zoo_name, model.zoo_config          # 'timit_blstm_ns', the resolved configuration
model = zoo.build("jsb_rnn_plain", units=8, **{"optimizer.learning_rate": 0.01})
```

``build`` loads no data. The presets are plain data (Keras objects as serialized configs), loaded
on the registry's first use (``import keras_rnnreg`` imports no framework beyond Keras'):

* :mod:`keras_rnnreg.zoo.noise_study` — Table 1 of "Regularizing Recurrent Networks" (40 names,
  ``{jsb,nottingham,pianomidi,musedata}_rnn_{plain,fd,nbr,n,ns,mn,mns,do,dos,ff}``);
* :mod:`keras_rnnreg.zoo.norm_stabilizer` — Krueger & Memisevic's PTB (Tables 1-3), TIMIT (Tables
  4-5) and adding-problem configurations;
* :mod:`keras_rnnreg.zoo.zoneout` — the zoneout paper's character-level PTB LSTM and its baselines
  (``ptb_char_lstm_zoneout{,_baseline,_wn,_ns}``).

Overrides (``units=8``, ``**{"optimizer.learning_rate": 0.01}``; see :mod:`keras_rnnreg.zoo.schema`)
are checked against the schema and the Keras objects' constructors: an unknown key or an ill-typed
value raises :class:`ConfigError` naming the key, the value and what was expected. An unknown name
raises :class:`UnknownModelError` (a ``KeyError``) listing the closest names.
"""

from keras_rnnreg import distribute as distribute_lib
from keras_rnnreg.zoo._builders import build_network, compile_model
from keras_rnnreg.zoo._registry import UnknownModelError, get_config, list_models, register, resolve
from keras_rnnreg.zoo.model import ZooModel
from keras_rnnreg.zoo.schema import ConfigError, apply_overrides, describe_keys, get_value
from keras_rnnreg.zoo.tasks.polyphonic import NoteCrossEntropy
from keras_rnnreg.zoo.tasks.ptb import OneHot

__all__ = ["ConfigError", "NoteCrossEntropy", "OneHot", "UnknownModelError", "ZooModel",
           "apply_overrides", "build", "build_network", "compile_model", "describe_keys",
           "get_config", "get_value", "list_models", "register", "resolve"]


def build(name, compile=True, distribute=None, **overrides):
    """A :class:`ZooModel` for a zoo name (or a config dict), compiled as in the paper.

    Optimizer, loss and metrics follow the configuration: e.g. the noise study's RMSprop with
    momentum and per-timestep NLL (``weighted_metrics=[NLLPerTimestep(), FrameAccuracy()]``; feed
    the pipelines' ``(x, y, sample_weight)`` batches), the norm-stabilizer paper's SGD with
    gradient clipping, or Adam and CTC for TIMIT. Loads no data.

    ``distribute`` (``"data-parallel"``, ``"tpu"``, ``"multi-worker"`` or a
    :class:`keras_rnnreg.distribute.Strategy`) builds the model under that strategy; on JAX the
    distribution then stays set for the process (see :mod:`keras_rnnreg.distribute`).
    """
    config = resolve(name, overrides)
    if distribute is not None:
        return distribute_lib.get(distribute).build(lambda: build(config, compile=compile))
    model = ZooModel(config)
    return compile_model(model, config) if compile else model
