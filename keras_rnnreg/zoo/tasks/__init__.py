"""The zoo's tasks, one module per data family: data, network input, loss, metrics, evaluation.

A new family is a module here registering its :class:`Task` (its corpus parsing, if any, in
:mod:`keras_rnnreg.data`); a configuration's is ``TASKS[config["task"]]`` (:func:`get`).
"""

import importlib
import pkgutil
from pathlib import Path

import keras

from keras_rnnreg.data import catalog
from keras_rnnreg.data.catalog import DataNotFoundError

__all__ = ["DATA_ROOT_ENV", "SYNTHETIC", "DataError", "DataNotFoundError", "FirstBatches", "TASKS",
           "Task", "get", "pipelines", "register", "resolve_source"]

SYNTHETIC = "synthetic"
DATA_ROOT_ENV = catalog.ENV_VAR


class DataError(ValueError):
    """The data was found but cannot be used (unreadable, wrong keys, bad symbols)."""


class Task:
    """What a data family gives the zoo besides the recurrent stack.

    Subclasses set the class attributes and define ``load(config, source)`` -> the splits
    (``source`` resolved by :func:`resolve_source`, or one of ``named_sources``);
    ``pipelines(config, data, seed)`` -> ``(train, validation)``; ``synthetic(config, seed)`` ->
    tiny random splits (CI, quick cards: they say nothing about the papers); ``batch(config)`` ->
    one ``(x, y, sample_weight)`` batch; ``compile_args(config)`` -> the loss,
    ``weighted_metrics`` and ``metrics``; ``evaluate(model, config, data, split)`` -> a dict with
    the headline ``metric``.
    """

    name = ""
    metric = ""  # the headline number of evaluate()
    metric_label = ""
    named_sources = (SYNTHETIC,)  # sources that are not paths

    def comparable(self, source, data):
        return source != SYNTHETIC

    def inputs(self, config):
        """``(keras.Input, tensor)``: float features ``(batch, time, model.input_dim)``."""
        inputs = keras.Input((None, config["model"]["input_dim"]), name="inputs")
        return inputs, inputs

    def epoch_callbacks(self, config, data):
        """Callbacks that compute validation numbers Keras metrics cannot (TIMIT's PER)."""
        return []

    def adjust(self, config, data):
        """``(overrides, notes)``: the config changes the data impose (PTB's vocabulary size,
        ``{"model.input_dim": 50}``) and what to tell the user about them."""
        return {}, []

    def extra_logs(self, config):
        """Epoch-log keys :meth:`epoch_callbacks` add (possible ``training.monitor`` values)."""
        return ()


TASKS = {}


def register(task):
    """Add a :class:`Task` instance under its ``name`` (a duplicate name raises)."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def get(config_or_name):
    """The task of a configuration (or of a task name)."""
    name = config_or_name if isinstance(config_or_name, str) else config_or_name["task"]
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return TASKS[name]


class FirstBatches(keras.utils.PyDataset):
    """The first ``steps`` batches of every epoch (``training.max_steps_per_epoch``)."""

    def __init__(self, data, steps):
        super().__init__()
        self.data, self.steps = data, int(steps)

    def __len__(self):
        return min(len(self.data), self.steps)

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
        raise DataNotFoundError(f"{name or 'this configuration'} has no default data: pass --data "
                                "PATH (or data.source) pointing at the corpus")
    if source in named:
        return source
    if source in catalog.CORPORA and not Path(source).exists():  # a corpus name: its path
        source = catalog.CORPORA[source].path
    path = Path(source).expanduser()
    roots = list(dict.fromkeys(str(r) for r in (data_root, catalog.data_root()) if r))
    candidates = [path] if path.is_absolute() else [path] + [Path(r).expanduser() / path
                                                            for r in roots]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    looked = ", ".join(str(c) for c in candidates)
    name = next((n for n, c in catalog.CORPORA.items() if c.path == source), None)
    corpus = catalog.CORPORA.get(name)
    where = "pass --data PATH" if corpus is None else f"{corpus.origin}; or pass --data PATH"
    if corpus is not None and corpus.url:
        where = f"`rnnreg data fetch {name}` downloads it from {where}"
    raise DataNotFoundError(f"data for {name or 'this configuration'} not found: {source!r} "
                            f"(looked at {looked}); {where}, or --data-root / ${DATA_ROOT_ENV} = "
                            f"the folder holding {source}")


# Every module of this package registers its Task on import: a new dataset is one module here.
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
