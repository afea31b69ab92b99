"""Child processes of the parallel runs and the distributed tuner: their environment, SIGTERM
handling, orphan detection and stopping (used by :mod:`keras_rnnreg.experiments._parallel` and
:mod:`keras_rnnreg.tuning.distributed`)."""

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

__all__ = ["child_env", "last_error", "stop_on_sigterm", "stop_processes", "stop_when_orphaned"]

_STOP = []  # set by SIGTERM in a child


def stop_on_sigterm():
    """In a child: SIGTERM raises ``KeyboardInterrupt``; a second one exits at once.

    Outside ``model.fit``; during it :func:`keras_rnnreg.training.train` stops at the next batch.
    """

    def on_term(signum, frame):
        if _STOP:
            os._exit(130)
        _STOP.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)


def stop_when_orphaned(every=2.0):
    """SIGTERM this child when its parent is gone (killed without a chance to stop it).

    The child's SIGTERM handler raises ``KeyboardInterrupt`` (SIGINT may be ignored: processes
    started in the background by a shell inherit that).
    """
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        while True:  # until the process has exited (see stop_on_sigterm)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(every * 5)

    threading.Thread(target=watch, daemon=True).start()


def child_env(device=None, shared=True, base=None):
    """The environment of a child: one device (``CUDA_VISIBLE_DEVICES``), memory sharing flags."""
    env = dict(os.environ if base is None else base)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(device)
    if shared:  # several processes on one accelerator: allocate memory on demand
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def visible_gpus():
    """The GPU ids a child can be given (``CUDA_VISIBLE_DEVICES``): those of this process's
    ``CUDA_VISIBLE_DEVICES`` when it is set, else the GPUs NVIDIA's driver lists (none without)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.stdout.splitlines())
            if line.startswith("GPU ")]


# Start-up lines of the backends (TensorFlow's C++ logging): never a child's reason for failing.
BANNERS = ("I0000", "W0000", "E0000", "WARNING: All log messages", "To enable the following")
ERROR_MARK = "error: "  # a failing child's last word: ERROR_MARK + "Type: message"


def error_line(err):
    """The one line a failing child prints last, for its parent (:func:`last_error`)."""
    return f"{ERROR_MARK}{type(err).__name__}: {' '.join(str(err).split())}"


def last_error(path, skip=()):
    """A child's own last error line (:func:`error_line`), else its log's last line that is not
    blank, a start-up banner nor starts with one of ``skip`` (of the last 200 such lines)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        text = ""
    skip = BANNERS + tuple(skip)
    lines = [x for x in text.splitlines() if x.strip() and not x.startswith(skip)][-200:]
    errors = [x for x in lines if x.startswith(ERROR_MARK)]
    return (errors or lines or ["(no output)"])[-1]


def stop_processes(procs, grace=20.0):
    """SIGTERM to the process group of every ``subprocess.Popen`` still running (each child stops
    after writing nothing partial), then SIGKILL to those still there after ``grace`` seconds."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.time() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
