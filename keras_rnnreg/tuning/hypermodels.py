"""KerasTuner's HyperModel over the zoo (:class:`ZooHyperModel`; the pipelines are made in
``fit``)."""

import keras_tuner

from keras_rnnreg import training, zoo
from keras_rnnreg.tuning import spaces as spaces_lib
from keras_rnnreg.zoo import tasks

__all__ = ["ZooHyperModel", "sample"]


def sample(hp, entry):
    """Draw one entry of a search space with ``hp``."""
    if entry["type"] == "choice":
        return hp.Choice(entry["name"], entry["values"])
    if entry["type"] == "int":
        return hp.Int(entry["name"], entry["min"], entry["max"], step=entry.get("step", 1))
    return hp.Float(entry["name"], entry["min"], entry["max"],
                    sampling=entry.get("sampling", "linear"))


class ZooHyperModel(keras_tuner.HyperModel):
    """Tune a zoo configuration over a search space.

    Args:
        name: a zoo name (or a config dict).
        space: a search-space name of :mod:`keras_rnnreg.tuning.spaces` or a list of entries.
        overrides: fixed overrides (dict or ``["key=value"]``) applied before the sampled ones.
        data: the loaded splits (``keras_rnnreg.zoo.tasks`` form); ``None`` loads
            ``data.source`` when ``fit`` first needs them.
        epochs: epochs per trial (default ``training.epochs``), unless the space tunes them.
        seed: data-order seed of every trial.
    """

    def __init__(self, name, space="noise_study_table2", overrides=None, data=None, epochs=None,
                 seed=0, data_root=None, **kwargs):
        super().__init__(name=kwargs.pop("hypermodel_name", None), tunable=True)
        self.base = zoo.resolve(name, overrides)
        self.space, self.task = spaces_lib.get(space), tasks.get(self.base)
        self.data, self.data_root, self.epochs, self.seed = data, data_root, epochs, seed

    def active_entries(self):
        """The entries that apply to this configuration (``requires`` satisfied)."""
        return [e for e in self.space
                if not e.get("requires") or zoo.get_value(self.base, e["requires"]) is not None]

    def config(self, hp):
        """The configuration of a trial: the base with the sampled values of the build-time keys."""
        values = {}
        for entry in self.active_entries():
            if entry["key"] not in spaces_lib.FIT_KEYS:
                values.update(dict.fromkeys([entry["key"], *entry.get("also", [])],
                                            sample(hp, entry)))
        return zoo.apply_overrides(self.base, values)

    def build(self, hp):
        return zoo.build(self.config(hp))

    def _splits(self):
        if self.data is None:  # the base then holds what the data impose (PTB's vocabulary size)
            _, self.data, _, _, self.base = training.load_task_data(self.base,
                                                                    data_root=self.data_root)
        return self.data

    def fit(self, hp, model, *args, callbacks=None, verbose=0, **kwargs):
        config = {**self.base, "data": dict(self.base["data"])}
        epochs = self.epochs or config["training"]["epochs"]
        for entry in self.active_entries():
            if entry["key"] == "data.batch_size":
                config["data"]["batch_size"] = sample(hp, entry)
            elif entry["key"] == "training.epochs":
                epochs = sample(hp, entry)
        train, valid = tasks.pipelines(self.task, config, self._splits(), self.seed)
        callbacks = [*self.task.epoch_callbacks(config, self._splits()), *(callbacks or [])]
        return model.fit(train, validation_data=valid, epochs=epochs, callbacks=callbacks,
                         verbose=verbose, shuffle=False)
