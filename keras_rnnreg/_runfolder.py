"""Run-folder primitives: the layout, atomic files, the writer's lock, RNG state, fault points.

An atomic file is written to a temporary ``.<name>.tmp-<random>`` beside the target, flushed, then
moved into place with ``os.replace``; the RNG state is that of the ``keras.random`` seed
generators, which ``model.save`` does not store.
"""

import contextlib
import csv
import io
import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LOCK = "run.lock"
CONFIG = "config.json"
STATE = "state.json"
HISTORY = "history.csv"
REPORT = "report.json"
CHECKPOINTS = "checkpoints"
LAST = "last.keras"
BEST = "best.keras"
EPOCH_FILE = "epoch-{epoch:04d}.keras"  # checkpoints/EPOCH_FILE: the model after that epoch
STATE_VERSION = 2
FAULT_ENV = "RNNREG_FAULT"
_TMP_MARK = ".tmp-"


class RunError(RuntimeError):
    """A run folder that cannot be used as asked (exists without --resume, is not a run, ...)."""


def read_json(path, what="run file"):
    """The JSON object in ``path``; :class:`RunError` saying what is wrong (``what``: its role)."""
    path = Path(path)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise RunError(f"{path}: missing ({what})") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise RunError(f"{path}: not valid JSON ({err}); the {what} is damaged") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object; the {what} is damaged")
    return data


def epoch_of(checkpoint):
    """The epoch of a checkpoint's file name (``EPOCH_FILE``): ``epoch-0007.keras`` -> 7."""
    return int(Path(checkpoint).name[len("epoch-") : -len(".keras")])


def check_state(run_dir, state):
    """``state`` (the run's ``state.json``) is of this version, complete, and its files exist."""
    where = Path(run_dir) / STATE
    if state.get("version") != STATE_VERSION:
        raise RunError(f"{where}: written by another version of keras-rnnreg (state version "
                       f"{state.get('version')!r}, expected {STATE_VERSION}); start a new run")
    keys = ("epoch", "last_checkpoint", "best_checkpoint", "history", "rng", "wait", "restarts")
    missing = [k for k in keys if k not in state]
    if missing:
        raise RunError(f"{where}: missing {', '.join(missing)}; the commit record is damaged")
    for key in ("last_checkpoint", "best_checkpoint"):
        name = state[key]
        if name is not None and not (Path(run_dir) / CHECKPOINTS / name).is_file():
            raise RunError(
                f"{where} says {state['epoch']} epoch(s) are done but {CHECKPOINTS}/{name} ({key}) "
                "is missing: the run folder is damaged; nothing was changed (restore the file, or "
                "start a new run with another --out)")


def best_checkpoint(run_dir):
    """``(path, "best.keras" or "last.keras", epoch)``: "the model of a run folder".

    The best epoch's checkpoint ``state.json`` names, else the last; RunError when there is none.
    """
    run_dir = Path(run_dir)
    if (run_dir / STATE).exists():
        state = read_json(run_dir / STATE, "commit record")
        check_state(run_dir, state)
        for key, label in (("best_checkpoint", BEST), ("last_checkpoint", LAST)):
            if state.get(key):
                return run_dir / CHECKPOINTS / state[key], label, epoch_of(state[key])
    raise RunError(f"{run_dir}: no committed epoch yet ({STATE} names no checkpoint; one is "
                   "written at the end of the first epoch)")


def finished_report(run_dir):
    """The report (``report.json``) of a finished run, else None."""
    path = Path(run_dir) / REPORT
    return read_json(path, "run report") if path.exists() else None


def tidy(run_dir, state):
    """Make ``history.csv``, the ``last`` / ``best`` links and the checkpoints agree with ``state``
    (and remove temporary files of interrupted writes)."""
    run_dir = Path(run_dir)
    checkpoints = run_dir / CHECKPOINTS
    keep = {state.get("last_checkpoint"), state.get("best_checkpoint")} - {None}
    for name, link in (("last_checkpoint", LAST), ("best_checkpoint", BEST)):
        if state.get(name):
            link_or_copy(checkpoints / state[name], checkpoints / link)
        else:
            (checkpoints / link).unlink(missing_ok=True)
    for path in checkpoints.glob(EPOCH_FILE.replace("{epoch:04d}", "*")):
        if path.name not in keep:
            path.unlink(missing_ok=True)
    sweep_temporaries(run_dir, checkpoints)
    rows = state["history"]
    keys = sorted({k for row in rows for k in row} - {"epoch"})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for row in rows:
        writer.writerow([row["epoch"], *(row.get(k, "") for k in keys)])
    atomic_write(run_dir / HISTORY, buffer.getvalue())


def _fsync_dir(folder):
    with contextlib.suppress(OSError):  # platforms without directory fds
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _replacing(path, suffix=""):
    """A temporary file beside ``path`` to write, which then replaces ``path`` (flushed, with a
    new file's mode); removed if the write fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TMP_MARK}", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        mask = os.umask(0)  # mkstemp's 0o600 becomes a new file's mode
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path, text):
    """Write ``text`` (str, or bytes) to ``path``: readers see the old file or the new one."""
    with _replacing(path) as tmp:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text, newline="")


def write_json_atomic(path, data):
    atomic_write(path, json.dumps(jsonable(data), indent=2) + "\n")


def save_model_atomic(model, path):
    """``model.save`` into a temporary ``.keras`` file beside ``path``, then ``os.replace``."""
    with _replacing(path, suffix=".keras") as tmp:  # model.save wants the .keras suffix
        model.save(tmp)


def link_or_copy(source, target):
    """Make ``target`` a hard link to ``source`` (a copy where links fail), atomically."""
    import shutil

    source, target = Path(source), Path(target)
    tmp = target.with_name(f".{target.name}{_TMP_MARK}{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def sweep_temporaries(*folders):
    """Remove the temporary files of interrupted atomic writes from ``folders``."""
    for folder in folders:
        for p in Path(folder).glob(f".*{_TMP_MARK}*"):
            if p.is_file():
                p.unlink(missing_ok=True)


def jsonable(value):
    """Plain JSON values; non-finite floats become the strings "nan", "inf", "-inf"."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


# ------------------------------------------------------------------------------------- the lock
class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock."""


class RunLock:
    """An exclusive ``flock`` of ``run.lock`` (dropped by the OS when its holder ends), for
    ``with`` blocks; :class:`RunLockedError` names the holder when another process has it."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK
        self._fd = None

    def acquire(self):
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise RunLockedError(f"{self.path.parent} is in use by another run ({holder}); wait "
                                 "for it to finish or choose another --out") from None
        except OSError as err:  # pragma: no cover - file systems without flock
            os.close(fd)
            raise RunLockedError(f"{self.path}: cannot lock the run folder ({err})") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd):
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (ValueError, OSError):
            info = {}
        if not info:
            return "holder unknown"
        return (f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}: "
                f"{info.get('command', '')}".strip())

    def fileno(self):
        """The locked file's descriptor (a child given it by ``pass_fds`` holds the lock too)."""
        return self._fd

    def release(self):
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def remove_empty_run_folder(run_dir):
    """Remove ``run_dir`` if it holds nothing but its lock file and empty folders."""
    run_dir = Path(run_dir)
    for path in sorted(run_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            try:
                path.rmdir()
            except OSError:
                return
        elif path.name != LOCK:
            return
    (run_dir / LOCK).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run_dir.rmdir()


# ------------------------------------------------------------------------------------ RNG state
def _seed_generators(model):
    by_id = {id(g): g for layer in model._flatten_layers(include_self=True, recursive=True)
             for g in getattr(layer, "_seed_generators", ())}  # the first place of each
    return list(by_id.values())


def scalars(logs):
    """The values of epoch logs that are numbers, as floats (in the logs' order)."""
    import keras

    out = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = float(keras.ops.convert_to_numpy(value))
        except (TypeError, ValueError):
            continue
    return out


def rng_state(model):
    """The seed generators' states of ``model``, in layer order, as lists of ints."""
    import keras

    return [np.asarray(keras.ops.convert_to_numpy(g.state.value)).tolist()
            for g in _seed_generators(model)]


def restore_rng_state(model, states):
    """Set the seed generators of ``model`` to ``states`` (from :func:`rng_state`)."""
    generators = _seed_generators(model)
    if len(generators) != len(states):
        raise ValueError(f"the checkpoint's random state has {len(states)} seed generator(s); the "
                         f"model has {len(generators)}")
    for generator, value in zip(generators, states):
        generator.state.assign(np.asarray(value, dtype=generator.state.dtype))


# --------------------------------------------------------------------------------- fault points
def fault_point(point, epoch):
    """Kill this process with SIGKILL at ``point`` of ``epoch`` when ``RNNREG_FAULT`` says so."""
    wanted = os.environ.get(FAULT_ENV)
    if wanted and wanted == f"{point}:{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)
