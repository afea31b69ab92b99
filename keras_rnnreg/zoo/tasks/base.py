"""What a task is: everything about a data family besides the network's recurrent stack.

A :class:`Task` holds, in one module per family (:mod:`~keras_rnnreg.zoo.tasks.polyphonic`,
``ptb``, ``timit``, ``adding``), the zoo's use of that family:

* data: ``load(config, source)`` -> the splits (``source`` already resolved to a path, or one of
  ``named_sources``); ``pipelines(config, data, seed)`` -> ``(train, validation)`` for
  ``model.fit``; ``synthetic(config, seed)`` -> tiny random splits of the right form (CI, quick
  cards); ``batch(config)`` -> one ``(x, y, sample_weight)`` batch for a single training step;
* the network's ends: ``inputs(config)`` -> ``(keras.Input, first tensor)``;
* compile: ``compile_args(config)`` -> the loss, ``weighted_metrics`` and ``metrics``;
* evaluation: ``evaluate(model, config, data, split)`` -> a dict holding the headline ``metric``,
  ``epoch_callbacks`` for validation numbers Keras metrics cannot compute, ``extra_logs``.

``"synthetic"`` data are random and say nothing about the papers: they exist so that every
configuration and card runs in seconds without downloads. The parsing of the corpora stays in
:mod:`keras_rnnreg.data` (pure pipelines, usable without the zoo).
"""

import os
from pathlib import Path

import keras

__all__ = [
    "DATA_ROOT_ENV",
    "SYNTHETIC",
    "DataError",
    "DataNotFoundError",
    "FirstBatches",
    "Task",
    "pipelines",
    "resolve_source",
]

SYNTHETIC = "synthetic"
DATA_ROOT_ENV = "RNNREG_DATA"


class DataNotFoundError(FileNotFoundError):
    """A configuration's data could not be found; the message says where we looked."""


class DataError(ValueError):
    """The data was found but cannot be used (unreadable, wrong keys, bad symbols); names the
    file."""


class Task:
    """The base of the four tasks (see the module docstring); subclasses set the class
    attributes and override the data methods."""

    name = ""
    metric = ""  # the headline number of evaluate()
    metric_label = ""
    named_sources = (SYNTHETIC,)  # sources that are not paths

    def comparable(self, source, data):
        return source != SYNTHETIC

    def load(self, config, source):
        raise NotImplementedError

    def pipelines(self, config, data, seed):
        raise NotImplementedError

    def evaluate(self, model, config, data, split="test"):
        raise NotImplementedError

    def synthetic(self, config, seed=0):
        raise NotImplementedError

    def batch(self, config, batch_size=2, seed=0):
        raise NotImplementedError

    def inputs(self, config):
        """``(keras.Input, tensor)``: float features ``(batch, time, model.input_dim)``."""
        inputs = keras.Input((None, config["model"]["input_dim"]), name="inputs")
        return inputs, inputs

    def compile_args(self, config):
        """``{"loss", "weighted_metrics", "metrics"}`` for ``model.compile``."""
        raise NotImplementedError

    def epoch_callbacks(self, config, data):
        """Callbacks that compute validation numbers Keras metrics cannot (TIMIT's PER)."""
        return []

    def adjust(self, config, data):
        """Config changes the data impose (PTB's vocabulary size); returns notes."""
        return []

    def extra_logs(self, config):
        """Epoch-log keys that :meth:`epoch_callbacks` add (possible ``training.monitor``
        values)."""
        return ()


class FirstBatches(keras.utils.PyDataset):
    """The first ``steps`` batches of every epoch of a pipeline
    (``training.max_steps_per_epoch``)."""

    def __init__(self, data, steps):
        super().__init__()
        self.data = data
        self.steps = int(steps)

    def __len__(self):
        return min(len(self.data), self.steps)

    @property
    def num_batches(self):
        return len(self)

    def __getitem__(self, index):
        if index >= len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        return self.data[index]

    def on_epoch_end(self):
        self.data.on_epoch_end()


def pipelines(task, config, data, seed):
    """``task.pipelines`` with ``training.max_steps_per_epoch`` applied to the training one."""
    train, valid = task.pipelines(config, data, seed)
    steps = config["training"]["max_steps_per_epoch"]
    return (train if steps is None else FirstBatches(train, steps)), valid


def resolve_source(source, data_root=None, name="", named=(SYNTHETIC,)):
    """The data source as a path string (or a named source), searching the data roots.

    A relative path is looked up in the current folder, then under ``data_root`` and under
    ``$RNNREG_DATA``. Named sources (``"synthetic"``, ``"music21-chorales"``, ``"generated"``)
    pass through.
    """
    if source is None:
        raise DataNotFoundError(
            f"{name or 'this configuration'} has no default data: pass --data PATH "
            "(or data.source) pointing at the corpus"
        )
    if source in named:
        return source
    path = Path(source).expanduser()
    roots = [r for r in (data_root, os.environ.get(DATA_ROOT_ENV)) if r]
    candidates = [path] if path.is_absolute() else [path] + [Path(r).expanduser() / path
                                                            for r in roots]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    looked = ", ".join(str(c) for c in candidates)
    raise DataNotFoundError(
        f"data for {name or 'this configuration'} not found: {source!r} (looked at {looked}). "
        f"Pass --data PATH, or --data-root / ${DATA_ROOT_ENV} = the folder holding {source}"
    )
