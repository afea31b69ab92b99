"""The model class of the zoo: a functional ``keras.Model`` that knows its zoo configuration.

After keras-hub's ``Backbone``: the constructor takes the (resolved) configuration, builds the
functional graph and calls ``keras.Model.__init__(inputs, outputs)``; ``get_config`` returns that
configuration, so ``keras.saving.load_model`` gives back a :class:`ZooModel` (README, "Model zoo").

```python
model = ZooModel.from_preset("jsb_rnn_ns")             # fresh, compiled; loads no data
model.save("jsb.keras")
again = keras.saving.load_model("jsb.keras")
again.zoo_name, again.zoo_config["regularization"]   # 'jsb_rnn_ns', {...}
```
"""

import copy
import os
from pathlib import Path

import keras

from keras_rnnreg import _backend, _runfolder
from keras_rnnreg._api import serializable
from keras_rnnreg.zoo import _builders, _registry

__all__ = ["ZooModel"]


@serializable
class ZooModel(keras.Model):
    """A zoo network built from a configuration; ``zoo_name`` and ``zoo_config`` say which.

    Args:
        config: a resolved configuration dict (``keras_rnnreg.zoo.get_config(name)``) or a zoo
            name; it is completed and validated, so a bad key raises ``ConfigError``.
        **kwargs: ``name`` / ``trainable`` / ``dtype`` as for any ``keras.Model``.

    The graph is the same as ``keras_rnnreg.zoo.build_network(config)``'s (the same layers,
    names and weights); the model is not compiled (``keras_rnnreg.zoo.build`` and
    :meth:`from_preset` compile it as the paper did).
    """

    def __init__(self, config, **kwargs):
        config = _registry.resolve(config)
        network = _builders.build_network(config)
        kwargs.setdefault("name", network.name)
        super().__init__(network.inputs, network.outputs, **kwargs)
        self._zoo_config = config

    @property
    def zoo_name(self):
        """The zoo name the configuration came from ("" for a hand-written one)."""
        return self._zoo_config["name"]

    @property
    def zoo_config(self):
        """A copy of the resolved configuration (overrides included)."""
        return copy.deepcopy(self._zoo_config)

    def get_config(self):
        return {"config": self.zoo_config, "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # A fresh build shares nothing with the file being loaded (_backend.outside_object_sharing).
        with _backend.outside_object_sharing():
            return cls(**config)

    @classmethod
    def from_preset(cls, preset, compile=True, **overrides):
        """A model from a zoo name, a saved ``.keras`` file or a training run folder.

        * a zoo name (``"timit_blstm_ns"``): a fresh model with the preset's initialisation,
          ``overrides`` applied as in ``keras_rnnreg.zoo.build``; nothing is downloaded;
        * a ``.keras`` file written by ``model.save``: loaded with ``keras.saving.load_model``;
        * a run folder of ``rnnreg train``: its best committed checkpoint (else its last one).

        ``compile`` compiles a fresh model as the paper did, and keeps (``True``) or drops
        (``False``) a loaded model's saved compile settings. Overrides apply to names only.
        """
        path = Path(os.fspath(preset)) if isinstance(preset, (str, os.PathLike)) else None
        if path is not None and (path.suffix == ".keras" or path.is_dir()):
            if overrides:
                raise ValueError(f"from_preset({str(preset)!r}): overrides "
                                 f"({', '.join(overrides)}) apply to zoo names only; a saved model "
                                 "keeps the configuration it was trained with")
            return keras.saving.load_model(_saved_model_path(path), compile=compile)
        model = cls(_registry.resolve(preset, overrides))
        if compile:
            _builders.compile_model(model, model._zoo_config)
        return model


def _saved_model_path(path):
    """The ``.keras`` file behind a ``from_preset`` path (a file, or a run folder's best)."""
    if path.is_dir():
        try:
            return _runfolder.best_checkpoint(path)[0]
        except _runfolder.RunError as err:
            raise FileNotFoundError(f"{path}: not a run folder with a checkpoint ({err})") from None
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such saved model (.keras file)")
    return path
