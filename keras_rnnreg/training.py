"""Training runs of zoo configurations: run folders, checkpoints, resume, reports.

``rnnreg train NAME`` is :func:`train`; ``rnnreg evaluate RUN_DIR`` is :func:`evaluate_run`. The
run folder's files and what they guarantee: README, "What a run folder guarantees"; the per-epoch
commit is :class:`~keras_rnnreg.callbacks.RunFolderCheckpoint`.
"""

import math
import platform
import time
from pathlib import Path

import keras

from keras_rnnreg import _runfolder, zoo
from keras_rnnreg import callbacks as callbacks_lib
from keras_rnnreg import distribute as distribute_lib
from keras_rnnreg._runfolder import (
    CHECKPOINTS,
    CONFIG,
    HISTORY,
    REPORT,
    STATE,
    RunError,
    read_json,
    write_json_atomic,
)
from keras_rnnreg.zoo import tasks as _tasks

#: Configuration keys that ``resume=True`` may change (they change neither the network nor the data
#: nor what was trained so far).
RESUME_SAFE = ("training.epochs", "training.patience", "training.max_restarts")

__all__ = ["RESUME_SAFE", "RunError", "RunInterrupted", "best_model", "check_monitor",
           "evaluate_run", "format_report", "load_task_data", "log_names", "read_json", "train",
           "write_json_atomic"]


class RunInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (or ``SIGINT``); the message says how to continue."""


def _load_checkpoint(path):
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: missing checkpoint")
    try:
        return keras.saving.load_model(path)
    # Keras raises many kinds (zip, h5, "File not found" for a truncated file that exists).
    except Exception as err:
        text = " ".join(str(err).split())
        text = text[:200] + "..." if len(text) > 200 else text
        raise RunError(f"{path}: cannot load the checkpoint ({type(err).__name__}: "
                       f"{text})") from err


def log_names(config):
    """The epoch-log keys a zoo configuration's training writes (monitor candidates)."""
    task = _tasks.get(config)
    args = task.compile_args(config)
    names = ["loss"] + [m.name for m in (args["weighted_metrics"] or []) + (args["metrics"] or [])]
    return names + [f"val_{n}" for n in names] + list(task.extra_logs(config))


def check_monitor(config, key="training.monitor", value=None):
    """ConfigError unless ``value`` (default: the config's monitor) is one of the epoch logs."""
    value = config["training"]["monitor"] if value is None else value
    names = log_names(config)
    if value not in names:
        raise zoo.ConfigError(f"{key}={value!r} is not among the epoch logs of {config['name']!r}; "
                              f"expected one of {', '.join(names)}")


def _changed(before, after, prefix=()):
    """{dotted key: (old, new)} of the leaves that differ."""
    out = {}
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        path = prefix + (key,)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(_changed(a, b, path))
        elif a != b:
            out[".".join(p for p in path if p != "config")] = (a, b)  # zoo keys of Keras objects
    return out


# ------------------------------------------------------------------------------------ train
def load_task_data(config, data=None, data_root=None):
    """(task, data splits, resolved source, notes, config) for a config; ``data`` overrides the
    source; the config returned holds what the data impose (PTB's vocabulary size)."""
    task = _tasks.get(config)
    source = data if data is not None else config["data"]["source"]
    source = _tasks.resolve_source(source, data_root=data_root, name=config["name"],
                                   named=task.named_sources)
    try:
        splits = task.load(config, source)
    except _tasks.DataNotFoundError:
        raise
    except (ValueError, KeyError, OSError, EOFError) as err:
        text = str(err).strip("'\"")
        raise _tasks.DataError(text if str(source) in text else f"{source}: {text}") from err
    changes, notes = task.adjust(config, splits)
    return task, splits, source, notes, zoo.resolve(config, changes) if changes else config


def train(name_or_config, out_dir, *, data=None, data_root=None, epochs=None, seed=None,
          overrides=None, resume=False, distribute=None, verbose=1, callbacks=(), tensorboard=None,
          log=print):
    """Train a zoo configuration into ``out_dir``; returns the report dict (also ``report.json``).

    Args:
        name_or_config: a zoo name or a config dict (with ``resume``: the run's name).
        out_dir: the run folder (created); without ``resume`` it must not hold a run already.
        data: the data source (a path, "synthetic", ...); default the configuration's
            ``data.source``, looked up under ``data_root`` / ``$RNNREG_DATA``.
        epochs: overrides ``training.epochs`` (≥ 1).
        seed: seeds Keras (weights, noise) and the data order (≥ 0; default 0, or the run's).
        overrides: dict or ``["key=value", ...]`` (see :func:`keras_rnnreg.zoo.apply_overrides`);
            with ``resume`` only the keys of :data:`RESUME_SAFE` may change.
        resume: continue the run in ``out_dir`` from its last committed epoch.
        distribute: ``"data-parallel"``, ``"tpu"`` or ``"multi-worker"``: build and fit under
            that strategy (a resume may use another); the test evaluation runs on one device.
        verbose: ``model.fit`` verbosity (1 progress bar, 2 one line per epoch, 0 silent).
        callbacks: extra Keras callbacks.
        tensorboard: write TensorBoard logs to ``tensorboard/``: None when ``tensorboard`` is
            installed, True always (else ImportError), False never.

    Raises:
        RunError: the folder is in use, holds another run, is damaged, or the resume would change
            the run; ConfigError / DataError for bad settings or data; RunInterrupted on Ctrl-C.
    """
    strategy = distribute_lib.get(distribute) if distribute is not None else None
    run_dir = Path(out_dir)
    callbacks = list(callbacks)
    if tensorboard or (tensorboard is None and callbacks_lib.tensorboard_available()):
        # ImportError (tensorboard=True without the package) before anything
        callbacks.insert(0, callbacks_lib.TensorBoardScalars(run_dir / "tensorboard"))
    for name, value, minimum in (("seed", seed, 0), ("epochs", epochs, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < minimum):
            raise zoo.ConfigError(f"{name}={value!r}: expected an integer >= {minimum}")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out {run_dir} is a file; expected a run folder (a new or an existing "
                       "folder)")
    if resume and not (run_dir / CONFIG).exists():
        raise RunError(f"cannot resume {run_dir}: {_missing(run_dir)}")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = _runfolder.RunLock(run_dir).acquire()
    except _runfolder.RunLockedError as err:
        raise RunError(str(err)) from None
    try:
        return _train_locked(name_or_config, run_dir, data=data, data_root=data_root, epochs=epochs,
                             seed=seed, overrides=overrides, resume=resume, strategy=strategy,
                             distribute=distribute, verbose=verbose, callbacks=callbacks, log=log)
    finally:
        lock.release()
        if created and not (run_dir / CONFIG).exists():  # failed before the run began
            _runfolder.remove_empty_run_folder(run_dir)


def _with_epochs(overrides, epochs):
    """``overrides`` (a dict or ``key=value`` strings) and ``training.epochs`` (None: as is)."""
    if epochs is None:
        return overrides
    if isinstance(overrides, dict):
        return {**overrides, "training.epochs": epochs}
    return [*(overrides or ()), f"training.epochs={epochs}"]


def _resume_settings(name_or_config, run_dir, overrides, epochs, seed):
    saved = read_json(run_dir / CONFIG, "run configuration")
    if not isinstance(saved.get("config"), dict) or not isinstance(saved.get("run"), dict):
        raise RunError(f"{run_dir / CONFIG}: expected the keys 'config' and 'run'; the file is "
                       "damaged")
    config, run_info = saved["config"], saved["run"]
    name = name_or_config if isinstance(name_or_config, str) else (name_or_config or {}).get("name")
    if name and name != config.get("name"):
        raise RunError(f"cannot resume {run_dir} as {name!r}: it is a run of "
                       f"{config.get('name')!r} (rnnreg train {config.get('name')} --out {run_dir} "
                       "--resume)")
    try:
        config = zoo.resolve(config)
    except zoo.ConfigError as err:
        raise RunError(f"{run_dir / CONFIG}: {err}; the file is damaged") from None
    new = zoo.resolve(config, _with_epochs(overrides, epochs))
    changed = _changed(config, new)
    unsafe = {k: v for k, v in changed.items() if k not in RESUME_SAFE}
    if unsafe:
        key, (old, value) = next(iter(unsafe.items()))
        raise RunError(
            f"cannot resume {run_dir} with {key}={value!r}: the run was made with {key}={old!r}, "
            "and a resumed run must keep its network, data and training (only "
            f"{', '.join(RESUME_SAFE)} may change); start a new run with another --out")
    if seed is not None and seed != run_info.get("seed"):
        raise RunError(f"cannot resume {run_dir} with --seed {seed}: the run was made with seed "
                       f"{run_info.get('seed')}")
    return new, run_info, {k: list(v) for k, v in changed.items()}


def _train_locked(name_or_config, run_dir, *, data, data_root, epochs, seed, overrides, resume,
                  strategy, distribute, verbose, callbacks, log):
    started = time.time()
    changes = {}
    if resume:
        config, run_info, changes = _resume_settings(name_or_config, run_dir, overrides, epochs,
                                                     seed)
        seed = run_info["seed"]
        state = read_json(run_dir / STATE, "commit record") if (run_dir / STATE).exists() else None
    else:
        if (run_dir / CONFIG).exists() or (run_dir / STATE).exists():
            raise RunError(f"{run_dir} already holds a run; pass --resume to continue it or choose "
                           "another --out")
        config = zoo.resolve(name_or_config, _with_epochs(overrides, epochs))
        seed = 0 if seed is None else seed
        run_info, state = None, None
    check_monitor(config)
    if state is not None:
        _runfolder.check_state(run_dir, state)

    keras.utils.set_random_seed(seed)
    wanted = data if data is not None else (run_info["data"] if run_info else None)
    task, splits, source, notes, config = load_task_data(config, wanted, data_root)
    if run_info is not None and str(source) != str(run_info["data"]):
        raise RunError(f"cannot resume {run_dir} on data {source!r}: the run was trained on "
                       f"{run_info['data']!r}")
    comparable = task.comparable(source, splits)
    if not comparable:
        notes.append(f"data {source!r} is not the paper's benchmark: the number is not comparable "
                     "with the paper's")
    here = {"backend": keras.backend.backend(), "keras": keras.__version__,
            "python": platform.python_version(), "distribute": distribute}
    if run_info is None:
        run_info = dict(seed=seed, data=source, **here, comparable=comparable, notes=notes,
                        resumes=[])
    else:
        run_info.setdefault("resumes", []).append({
            "after_epoch": state["epoch"] if state else 0, **here,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "changed": changes})
    (run_dir / CHECKPOINTS).mkdir(exist_ok=True)
    write_json_atomic(run_dir / CONFIG, {"config": config, "run": run_info})

    log(f"{config['name']}: {config['description']}; data: {source}"
        + ("" if comparable else " (not the paper's benchmark data)") + f"; run folder: {run_dir}")
    train_data, valid_data = _tasks.pipelines(task, config, splits, seed)
    if strategy is not None:
        train_data, valid_data = strategy.shard_data(train_data), strategy.shard_data(valid_data)
    model, state, initial_epoch = _model_and_state(run_dir, config, state, strategy, train_data,
                                                   log)

    total_epochs = config["training"]["epochs"]
    if state.get("stopped_early") or initial_epoch >= total_epochs:
        log(f"{run_dir}: training already finished ({state['epoch']} epochs)")
    else:
        with distribute_lib.scope(strategy):
            _fit(model, run_dir, config, state, task.epoch_callbacks(config, splits), train_data,
                 valid_data, initial_epoch, verbose, callbacks, log)

    report = _report(run_dir, config, run_info, state, task, splits, started)
    log(format_report(report))
    return report


def _model_and_state(run_dir, config, state, strategy, train_data, log):
    """The model and commit record to train on: the last checkpoint's (resume) or fresh ones."""
    t = config["training"]
    if state is not None:
        _runfolder.tidy(run_dir, state)
        with distribute_lib.scope(strategy):
            model = _load_checkpoint(run_dir / CHECKPOINTS / state["last_checkpoint"])
        try:
            _runfolder.restore_rng_state(model, state["rng"])
        except ValueError as err:
            raise RunError(f"{run_dir / STATE}: {err}") from None
        initial_epoch = int(state["epoch"])
        for _ in range(initial_epoch):  # continue the seeded shuffling where it was
            train_data.on_epoch_end()
        log(f"resuming {run_dir} after epoch {initial_epoch} (best {t['monitor']} = "
            f"{state['best']})")
    else:
        with distribute_lib.scope(strategy):
            model = zoo.build(config)
        state = {"version": _runfolder.STATE_VERSION, "epoch": 0, "best": None, "best_epoch": None,
                 "wait": 0, "restarts": 0, "stopped_early": False, "finished": False,
                 "learning_rate": zoo.get_value(config, "optimizer.learning_rate"),
                 "last_checkpoint": None, "best_checkpoint": None, "history": [], "rng": None}
        initial_epoch = 0
        _runfolder.tidy(run_dir, state)  # files of a first epoch that was never committed
    return model, state, initial_epoch


def _fit(model, run_dir, config, state, task_callbacks, train_data, valid_data, initial_epoch,
         verbose, callbacks, log):
    """``fit`` with the run folder's callbacks, through the one NaN-restart loop."""
    t = config["training"]
    state["finished"] = False
    nan = callbacks_lib.NaNRestart(max_restarts=t["max_restarts"]) if t["nan_restart"] else None
    if nan is not None:
        nan.restarts = int(state["restarts"])
    best = state["best_epoch"]
    stopper = callbacks_lib.ResumableEarlyStopping(
        t["monitor"], t["mode"], t["patience"], wait=state["wait"], best=state["best"],
        best_epoch=0 if best is None else best - 1, skip=nan)
    interrupt = callbacks_lib.StopOnSignal(log)
    # SpectralRadiusLogger: spectral_radius/<layer>[/<gate>] in every epoch's row (noise study)
    cbs = [*task_callbacks, callbacks_lib.SpectralRadiusLogger(), stopper,
           callbacks_lib.RunFolderCheckpoint(run_dir, state, stopper, nan_restart=nan), *callbacks,
           interrupt]
    fit = dict(x=train_data, validation_data=valid_data, epochs=t["epochs"],
               initial_epoch=initial_epoch, verbose=verbose, shuffle=False)

    def restarted(epoch, lr):
        log(f"NaN in epoch {epoch + 1}: restarting it from the previous epoch's weights with "
            f"learning rate {lr:g}")

    try:
        with interrupt:
            if nan is None:
                model.fit(callbacks=cbs, **fit)
            else:
                callbacks_lib.fit_with_restarts(model, nan_callback=nan, callbacks=cbs,
                                                on_restart=restarted, **fit)
    except KeyboardInterrupt as err:
        raise RunInterrupted(f"interrupted; {state['epoch']} finished epoch(s) are saved in "
                             f"{run_dir}; continue with: rnnreg train {config['name']} --out "
                             f"{run_dir} --resume") from err
    except callbacks_lib.NonFiniteLossError as err:
        raise RunError(f"{err}; {run_dir} keeps the {state['epoch']} finished epoch(s): resume "
                       f"with a larger training.max_restarts (rnnreg train {config['name']} --out "
                       f"{run_dir} --resume --set training.max_restarts={t['max_restarts'] + 5}) "
                       "or start a new run with a smaller learning rate") from err
    state["finished"] = True
    write_json_atomic(run_dir / STATE, state)


def best_model(run_dir):
    """(model, "best.keras" or "last.keras", epoch) of the best (else last) committed checkpoint.

    :class:`RunError` when none is committed.
    """
    path, label, epoch = _runfolder.best_checkpoint(run_dir)
    return _load_checkpoint(path), label, epoch


def compare_with_paper(ours, paper):
    """``relative_difference`` and ``within_5_percent`` of our number against the paper's (None
    when there is no paper number or ours is not finite)."""
    if not paper or not math.isfinite(ours):
        return {"relative_difference": None, "within_5_percent": None}
    return {"relative_difference": (ours - paper) / paper,
            "within_5_percent": bool(abs(ours - paper) <= 0.05 * abs(paper))}


def _report(run_dir, config, run_info, state, task, splits, started):
    model, checkpoint, checkpoint_epoch = best_model(run_dir)
    test = task.evaluate(model, config, splits, "test")
    ours = float(test[task.metric])
    paper = config["paper"]["value"]
    report = {
        "name": config["name"], "description": config["description"], "run_dir": str(run_dir),
        "metric": task.metric, "metric_label": task.metric_label, "ours": ours, "paper": paper,
        "paper_table": config["paper"]["table"], **compare_with_paper(ours, paper),
        "comparable": run_info["comparable"], "test": test, "checkpoint": checkpoint,
        "checkpoint_epoch": checkpoint_epoch, "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_validation": {config["training"]["monitor"]: state["best"]},
        "stopped_early": state["stopped_early"], "nan_restarts": state["restarts"],
        "seed": run_info["seed"], "data": run_info["data"], "backend": run_info["backend"],
        "notes": run_info["notes"], "evaluated_in_s": round(time.time() - started, 1),
    }
    write_json_atomic(Path(run_dir) / REPORT, report)
    return report


def format_report(report):
    ours = report["ours"]
    if isinstance(ours, float) and not math.isfinite(ours):
        lines = [f"{report['name']}: {report['metric_label']} = {ours} (not a finite number: the "
                 "network's predictions overflowed)"]
    else:
        lines = [f"{report['name']}: {report['metric_label']} = {ours:.4g}"]
        diff = report.get("relative_difference")
        if report.get("paper") is not None and diff is not None:
            # a percentage only against the paper's data: on a substitute it would mean nothing
            vs = f", {diff:+.1%}" if report.get("comparable", True) else ""
            lines[0] += f"  (paper: {report['paper']:g}{vs}; {report['paper_table']})"
    if not report.get("comparable", True):
        lines.append("  note: not the paper's data; the numbers are not comparable")
    lines.append(f"  best epoch {report['best_epoch']} of {report['epochs_run']}; report: "
                 f"{Path(report['run_dir']) / REPORT}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- evaluate
def _missing(run_dir):
    """Why ``run_dir`` is not a run folder; None when it is one."""
    if not run_dir.exists():
        return f"{run_dir} does not exist"
    if not run_dir.is_dir():
        return f"{run_dir} is not a folder"
    if not (run_dir / CONFIG).exists():
        return (f"{run_dir} is not a run folder of `rnnreg train`: missing {CONFIG} (a run folder "
                f"holds {CONFIG}, {STATE}, {CHECKPOINTS}/, {HISTORY})")
    return None


def evaluate_run(run_dir, data=None, data_root=None, split="test", log=print):
    """Evaluate a run folder's best committed checkpoint on a split; returns the task's numbers."""
    run_dir = Path(run_dir)
    problem = _missing(run_dir)
    if problem is None and not (run_dir / STATE).exists():
        problem = (f"{run_dir} has no finished epoch yet: missing {STATE} (written at the end of "
                   "the first epoch with the checkpoint)")
    if problem:
        raise RunError(problem)
    saved = read_json(run_dir / CONFIG, "run configuration")
    config, run_info = saved["config"], saved["run"]
    wanted = data if data is not None else run_info["data"]
    task, splits, source, _, config = load_task_data(config, wanted, data_root)
    if split not in splits or splits[split] is None:
        raise RunError(f"the data at {source!r} has no {split!r} split")
    model, checkpoint, checkpoint_epoch = best_model(run_dir)
    out = task.evaluate(model, config, splits, split)
    return {"name": config["name"], "split": split, "checkpoint": checkpoint,
            "checkpoint_epoch": checkpoint_epoch, "data": source, "metric": task.metric,
            "ours": float(out[task.metric]), "paper": config["paper"]["value"], **out}
