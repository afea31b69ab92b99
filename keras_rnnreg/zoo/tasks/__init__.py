"""The zoo's tasks, one module each: data, the network's input, loss, metrics, evaluation.

``TASKS`` maps a name (a configuration's ``task``) to its :class:`~.base.Task`; the schema's
choices of ``task`` and the graph code's per-task pieces come from here. A new data family is a
module here with a ``Task`` subclass, registered with :func:`register` (plus, if its corpus needs
parsing, a pipeline in :mod:`keras_rnnreg.data`).
"""

from keras_rnnreg.zoo.tasks.base import (
    DATA_ROOT_ENV,
    SYNTHETIC,
    DataError,
    DataNotFoundError,
    FirstBatches,
    Task,
    pipelines,
    resolve_source,
)

__all__ = [
    "DATA_ROOT_ENV",
    "SYNTHETIC",
    "TASKS",
    "DataError",
    "DataNotFoundError",
    "FirstBatches",
    "Task",
    "get",
    "pipelines",
    "register",
    "resolve_source",
]

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


from keras_rnnreg.zoo.tasks import adding, polyphonic, ptb, timit  # noqa: E402, F401  (register)
