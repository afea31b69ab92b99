"""Training runs of zoo configurations: run folders, checkpoints, resume, reports.

``rnnreg train NAME`` is :func:`train`; ``rnnreg evaluate RUN_DIR`` is :func:`evaluate_run`.

A run folder holds

=====================  ====================================================================
``config.json``        the resolved configuration and the run's settings (seed, data, backend)
``checkpoints/``       ``last.keras`` (model + optimizer state, after every epoch) and
                       ``best.keras`` (the best epoch on ``training.monitor``), each written to a
                       temporary file and moved into place with ``os.replace``
``state.json``         finished epochs, best value and epoch, early-stopping counter, restarts
``history.csv``        one row per epoch (``keras.callbacks.CSVLogger``, appended on resume)
``tensorboard/``       TensorBoard logs
``report.json``        the test numbers beside the paper's, written at the end
=====================  ====================================================================

``resume=True`` reloads ``last.keras`` (weights and optimizer state) and continues with the
epoch after the last finished one; the data pipeline's shuffling continues where it was. Early
stopping uses ``training.monitor`` / ``mode`` / ``patience``; the NaN policy of the
norm-stabilizer paper (halve the learning rate and restart from the previous epoch) is
:class:`keras_rnnreg.callbacks.NaNRestart`; gradient clipping is the optimizer's
``global_clipnorm`` from the configuration. The test number is computed with the best epoch's
weights by the task's whole-split evaluation (e.g. test sequences run whole for Table 1).
"""

import csv
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from keras_rnnreg import callbacks as callbacks_lib
from keras_rnnreg import distribute as distribute_lib
from keras_rnnreg import zoo
from keras_rnnreg.zoo import _tasks

CONFIG = "config.json"
STATE = "state.json"
HISTORY = "history.csv"
REPORT = "report.json"
CHECKPOINTS = "checkpoints"
LAST = "last.keras"
BEST = "best.keras"


class RunError(RuntimeError):
    """A run folder that cannot be used as asked (exists without --resume, is not a run, ...)."""


# ------------------------------------------------------------------------------------ files
def write_json_atomic(path, data):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_jsonable(data), f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model_atomic(model, path):
    """``model.save`` to a temporary ``.keras`` file in the same folder, then ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _read_json(path):
    with open(path) as f:
        return json.load(f)


# -------------------------------------------------------------------------------- callbacks
class RunKeeper(keras.callbacks.Callback):
    """Checkpoints every epoch, keeps the best, early stopping — with state that survives resume.

    After every epoch: ``best.keras`` when ``monitor`` improved, then ``last.keras`` and
    ``state.json`` (both written atomically). Skips an epoch the :class:`NaNRestart` callback
    flagged. Stops training after ``patience`` epochs without improvement.
    """

    def __init__(self, run_dir, monitor, mode, patience, state, nan_callback=None, log=print):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.state = state
        self.nan_callback = nan_callback
        self.log = log

    def _better(self, value, best):
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.nan_callback is not None and self.nan_callback.triggered:
            return
        value = logs.get(self.monitor)
        if value is None:
            raise RunError(
                f"training.monitor={self.monitor!r} is not among the epoch logs ({', '.join(sorted(logs))}); "
                "set --set training.monitor=<one of them>"
            )
        value = float(value)
        state = self.state
        checkpoints = self.run_dir / CHECKPOINTS
        if math.isfinite(value) and self._better(value, state["best"]):
            state.update(best=value, best_epoch=epoch + 1, wait=0)
            save_model_atomic(self.model, checkpoints / BEST)
        else:
            state["wait"] += 1
        state["epoch"] = epoch + 1
        state["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if self.patience is not None and state["wait"] >= self.patience:
            state["stopped_early"] = True
            self.model.stop_training = True
        save_model_atomic(self.model, checkpoints / LAST)
        write_json_atomic(self.run_dir / STATE, state)


class StopAfterEpoch(keras.callbacks.Callback):
    """Raise ``KeyboardInterrupt`` at the end of an epoch (tests of interrupted runs)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt(f"stopped after epoch {self.epoch}")


# ------------------------------------------------------------------------------------ train
def _trim_history(path, epochs):
    """Keep the rows of the first ``epochs`` epochs of a CSVLogger file (resume, NaN restart)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if r and r[0].strip().isdigit() and int(r[0]) < epochs]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(kept)


def load_task_data(config, data=None, data_root=None):
    """(task, data splits, resolved source, notes) for a config; ``data`` overrides the source."""
    task = _tasks.get(config)
    source = data if data is not None else config["data"]["source"]
    source = _tasks.resolve_source(source, data_root=data_root, name=config["name"], named=task.named_sources)
    splits = task.load(config, source)
    notes = task.adjust(config, splits)
    return task, splits, source, notes


def train(
    name_or_config,
    out_dir,
    *,
    data=None,
    data_root=None,
    epochs=None,
    seed=0,
    overrides=None,
    resume=False,
    distribute=None,
    verbose=1,
    callbacks=(),
    log=print,
):
    """Train a zoo configuration into ``out_dir``; returns the report dict (also ``report.json``).

    Args:
        name_or_config: a zoo name or a config dict.
        out_dir: the run folder (created). Without ``resume`` it must not hold a run already.
        data: the data source (a path, or "synthetic", "music21-chorales", ...); default
            ``data.source`` of the configuration, looked up under ``data_root`` / ``$RNNREG_DATA``.
        epochs: overrides ``training.epochs``.
        seed: seeds Keras (weights, noise) and the data order.
        overrides: dict or ``["key=value", ...]`` (see :func:`keras_rnnreg.zoo.apply_overrides`).
        resume: continue the run in ``out_dir`` from its last finished epoch.
        verbose: ``model.fit`` verbosity (1 progress bar, 2 one line per epoch, 0 silent).
        callbacks: extra Keras callbacks.
        distribute: ``"data-parallel"``, ``"tpu"`` or ``"multi-worker"`` (keras_rnnreg.distribute):
            build and fit under that strategy; the test evaluation runs on one device.
    """
    strategy = distribute_lib.get(distribute) if distribute is not None else None
    run_dir = Path(out_dir)
    started = time.time()
    if resume:
        missing = _missing(run_dir, (CONFIG,))
        if missing:
            raise RunError(f"cannot resume {run_dir}: {missing}")
        saved = _read_json(run_dir / CONFIG)
        config, run_info = saved["config"], saved["run"]
        if overrides or epochs is not None:
            config = zoo.apply_overrides(config, overrides or {})
            if epochs is not None:
                config["training"]["epochs"] = int(epochs)
        seed = run_info["seed"]
        data = data if data is not None else run_info["data"]
        state = _read_json(run_dir / STATE) if (run_dir / STATE).exists() else None
    else:
        if (run_dir / CONFIG).exists() or (run_dir / STATE).exists():
            raise RunError(
                f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        config = zoo.resolve(name_or_config, overrides)
        if epochs is not None:
            config = zoo.apply_overrides(config, {"training.epochs": epochs})
        state = None

    keras.utils.set_random_seed(seed)
    task, splits, source, notes = load_task_data(config, data, data_root)
    comparable = task.comparable(source, splits)
    if not comparable:
        notes.append(f"data {source!r} is not the paper's benchmark: the number is not comparable with the paper's")
    run_info = {
        "seed": seed,
        "data": source,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "comparable": comparable,
        "notes": notes,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CHECKPOINTS).mkdir(exist_ok=True)
    write_json_atomic(run_dir / CONFIG, {"config": config, "run": run_info})

    log(f"{config['name']}: {config['description']}; data: {source}"
        + ("" if comparable else " (not the paper's benchmark data)") + f"; run folder: {run_dir}")
    train_data, valid_data = task.pipelines(config, splits, seed)
    if strategy is not None:
        train_data, valid_data = strategy.shard_data(train_data), strategy.shard_data(valid_data)
    t = config["training"]
    if state is not None and (run_dir / CHECKPOINTS / LAST).exists():
        with distribute_lib.scope(strategy):
            model = keras.saving.load_model(run_dir / CHECKPOINTS / LAST)
        initial_epoch = int(state["epoch"])
        for _ in range(initial_epoch):  # continue the seeded shuffling where it was
            train_data.on_epoch_end()
        log(f"resuming {run_dir} after epoch {initial_epoch} (best {t['monitor']} = {state['best']})")
    else:
        with distribute_lib.scope(strategy):
            model = zoo.build(config)
        state = {"epoch": 0, "best": None, "best_epoch": None, "wait": 0, "restarts": 0,
                 "stopped_early": False, "finished": False, "learning_rate": config["optimizer"]["learning_rate"]}
        initial_epoch = 0
    _trim_history(run_dir / HISTORY, initial_epoch)

    total_epochs = t["epochs"]
    if state.get("stopped_early") or initial_epoch >= total_epochs:
        log(f"{run_dir}: training already finished ({state['epoch']} epochs)")
    else:
        state["finished"] = False
        nan_cb = callbacks_lib.NaNRestart(max_restarts=t["max_restarts"]) if t["nan_restart"] else None
        keeper = RunKeeper(run_dir, t["monitor"], t["mode"], t["patience"], state, nan_callback=nan_cb, log=log)
        cbs = [
            *task.epoch_callbacks(config, splits),
            keeper,
            keras.callbacks.CSVLogger(str(run_dir / HISTORY), append=True),
            *_tensorboard(run_dir),
            *callbacks,
        ]
        if nan_cb is not None:
            cbs.insert(0, nan_cb)
        epoch = initial_epoch
        while True:
            with distribute_lib.scope(strategy):
                model.fit(train_data, validation_data=valid_data, epochs=total_epochs, initial_epoch=epoch,
                          callbacks=cbs, verbose=verbose, shuffle=False)
            if nan_cb is None or nan_cb.restart_epoch is None:
                break
            epoch = nan_cb.restart_epoch
            state["restarts"] = nan_cb.restarts
            lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
            log(f"NaN in epoch {epoch + 1}: restarting it from the previous epoch's weights with learning rate {lr:g}")
            _trim_history(run_dir / HISTORY, epoch)
        state["finished"] = True
        write_json_atomic(run_dir / STATE, state)

    report = _report(run_dir, config, run_info, state, task, splits, started)
    log(format_report(report))
    return report


class ScalarEvents(keras.callbacks.Callback):
    """Epoch scalars as TensorBoard event files, without the ``tensorboard`` package.

    ``keras.callbacks.TensorBoard`` needs the ``tensorboard`` package (not a dependency of
    TensorFlow 2.21). This writes the same layout (``train/`` and ``validation/`` folders,
    ``epoch_<metric>`` tags) with TensorFlow's event protos and TFRecord writer.
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers = {}

    def _writer(self, kind):
        if kind not in self._writers:
            import socket

            import tensorflow as tf

            folder = self.log_dir / kind
            folder.mkdir(parents=True, exist_ok=True)
            name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{len(self._writers)}"
            self._writers[kind] = tf.io.TFRecordWriter(str(folder / name))
            self._write(kind, self._event(file_version="brain.Event:2"))
        return self._writers[kind]

    @staticmethod
    def _event(step=0, file_version=None, tag=None, value=None):
        from tensorflow.core.framework import summary_pb2
        from tensorflow.core.util import event_pb2

        event = event_pb2.Event(wall_time=time.time(), step=int(step))
        if file_version:
            event.file_version = file_version
        else:
            event.summary.CopyFrom(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]))
        return event

    def _write(self, kind, event):
        self._writers[kind].write(event.SerializeToString())

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            try:
                value = float(keras.ops.convert_to_numpy(value))
            except (TypeError, ValueError):
                continue
            kind, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(kind)
            self._write(kind, self._event(epoch, tag=f"epoch_{tag}", value=value))
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def _tensorboard(run_dir):
    log_dir = str(run_dir / "tensorboard")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        try:
            import tensorflow  # noqa: F401
        except ImportError:  # pragma: no cover - tensorflow is a dependency
            return []
        return [ScalarEvents(log_dir)]
    return [keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False)]


def _best_model(run_dir):
    for name in (BEST, LAST):
        path = Path(run_dir) / CHECKPOINTS / name
        if path.exists():
            return keras.saving.load_model(path), name
    raise RunError(f"{run_dir}: no checkpoint in {CHECKPOINTS}/ (expected {BEST} or {LAST})")


def _report(run_dir, config, run_info, state, task, splits, started):
    model, checkpoint = _best_model(run_dir)
    test = task.evaluate(model, config, splits, "test")
    ours = float(test[task.metric])
    paper = config["paper"]["value"]
    report = {
        "name": config["name"],
        "description": config["description"],
        "run_dir": str(run_dir),
        "metric": task.metric,
        "metric_label": task.metric_label,
        "ours": ours,
        "paper": paper,
        "paper_table": config["paper"]["table"],
        "relative_difference": (ours - paper) / paper if paper else None,
        "within_5_percent": bool(abs(ours - paper) <= 0.05 * abs(paper)) if paper else None,
        "comparable": run_info["comparable"],
        "test": test,
        "checkpoint": checkpoint,
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_validation": {config["training"]["monitor"]: state["best"]},
        "stopped_early": state["stopped_early"],
        "nan_restarts": state["restarts"],
        "seed": run_info["seed"],
        "data": run_info["data"],
        "backend": run_info["backend"],
        "notes": run_info["notes"],
        "evaluated_in_s": round(time.time() - started, 1),
    }
    write_json_atomic(Path(run_dir) / REPORT, report)
    return report


def format_report(report):
    lines = [f"{report['name']}: {report['metric_label']} = {report['ours']:.4g}"]
    if report.get("paper") is not None:
        diff = report["relative_difference"]
        lines[0] += f"  (paper: {report['paper']:g}, {diff:+.1%}; {report['paper_table']})"
    if not report.get("comparable", True):
        lines.append("  note: not the paper's data; the numbers are not comparable")
    lines.append(f"  best epoch {report['best_epoch']} of {report['epochs_run']}; report: "
                 f"{Path(report['run_dir']) / REPORT}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- evaluate
def _missing(run_dir, names):
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return f"{run_dir} does not exist"
    if not run_dir.is_dir():
        return f"{run_dir} is not a folder"
    absent = [n for n in names if not (run_dir / n).exists()]
    if absent:
        return (f"{run_dir} is not a run folder of `rnnreg train`: missing {', '.join(absent)} "
                f"(a run folder holds {CONFIG}, {CHECKPOINTS}/{BEST} or {LAST}, {STATE}, {HISTORY})")
    return None


def evaluate_run(run_dir, data=None, data_root=None, split="test", log=print):
    """Evaluate a run folder's best checkpoint on a split; returns the task's numbers."""
    run_dir = Path(run_dir)
    problem = _missing(run_dir, (CONFIG,))
    if problem is None and not any((run_dir / CHECKPOINTS / n).exists() for n in (BEST, LAST)):
        problem = (f"{run_dir} is not a finished run folder: missing {CHECKPOINTS}/{BEST} and "
                   f"{CHECKPOINTS}/{LAST} (written at the end of the first epoch)")
    if problem:
        raise RunError(problem)
    saved = _read_json(run_dir / CONFIG)
    config, run_info = saved["config"], saved["run"]
    task, splits, source, _ = load_task_data(config, data if data is not None else run_info["data"], data_root)
    if split not in splits or splits[split] is None:
        raise RunError(f"the data at {source!r} has no {split!r} split")
    model, checkpoint = _best_model(run_dir)
    out = task.evaluate(model, config, splits, split)
    result = {"name": config["name"], "split": split, "checkpoint": checkpoint, "data": source,
              "metric": task.metric, "ours": float(out[task.metric]), "paper": config["paper"]["value"], **out}
    return result
