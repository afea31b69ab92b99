"""KerasTuner's distributed mode on one machine: ``rnnreg tune JOB.toml --workers N``.

No scheduler of our own: the chief (``KERASTUNER_TUNER_ID=chief``, the oracle served over gRPC on
``127.0.0.1:<free port>``) and N workers (``tuner0 ..``, each writing ``worker.json`` into the
trials it runs) are ``python -m keras_rnnreg.tuning._child OUT`` processes running
:func:`keras_rnnreg.tuning.search.search` on ``OUT/job.json``; they inherit the folder's lock.
The oracle is on disk after every trial, so once every worker has exited the chief is stopped (it
would poll 20 s more) and the parent summarizes the search from ``OUT``; a trial whose worker died
is unfinished: the command fails naming it, and the next one runs it again.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from keras_rnnreg import _processes, _runfolder
from keras_rnnreg.tuning import folder
from keras_rnnreg.tuning import search as searching
from keras_rnnreg.tuning.search import BARRIER, CHIEF

__all__ = ["free_port", "search", "tuner_env"]

STOP_GRACE = 3.0  # seconds a process has to stop on SIGTERM before SIGKILL (its files are atomic)


def free_port(host="127.0.0.1"):
    """A free TCP port on ``host`` (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tuner_env(tuner_id, port, base=None, host="127.0.0.1", barrier=None):
    # workers share the accelerator with the chief: they allocate memory on demand
    env = _processes.child_env(shared=tuner_id != CHIEF, base=base)
    if barrier:
        env[BARRIER] = barrier
    env.update(KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP=host,
               KERASTUNER_ORACLE_PORT=str(port))
    return env


def _process_failure(out, name, code):
    """``worker tuner1 exited with status 1: error: ...`` (a killed one has no last word)."""
    who = "the KerasTuner chief" if name == CHIEF else f"worker {name}"
    if code < 0:
        return f"{who} was killed by {signal.Signals(-code).name}"
    return f"{who} exited with status {code}: {_processes.last_error(out / f'{name}.log')}"


class _Launch:
    """The chief and worker processes of one distributed search over ``out``."""

    def __init__(self, out, workers, data_root=None, lock=None):
        self.out, self.port = Path(out), free_port()
        self.names = [f"tuner{i}" for i in range(workers)]
        self.argv = [sys.executable, "-m", "keras_rnnreg.tuning._child", str(self.out)]
        if data_root:
            self.argv += ["--data-root", str(data_root)]
        self.barrier = f"{self.out}|{self.port}-{os.getpid()}|{workers}"
        self.lock_fds = () if lock is None or lock.fileno() is None else (lock.fileno(),)
        self.logs, self.procs = {}, {}

    def start(self, tuner_id):
        self.logs[tuner_id] = open(self.out / f"{tuner_id}.log", "ab")
        self.procs[tuner_id] = subprocess.Popen(
            self.argv, stdout=self.logs[tuner_id], stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, pass_fds=self.lock_fds, start_new_session=True,
            env=tuner_env(tuner_id, self.port, barrier=self.barrier))

    def stop(self):
        _processes.stop_processes(list(self.procs.values()), grace=STOP_GRACE)
        for f in self.logs.values():
            f.close()
        for path in self.out.glob(".ready-*"):
            path.unlink(missing_ok=True)


def _report_trials(out, seen, log):
    by_worker = folder.trial_workers(out)
    for trial_id, (status, score) in sorted(folder.trial_states(out).items()):
        if seen.get(trial_id) != status and status in ("COMPLETED", "FAILED", "INVALID"):
            score_text = f", score {score:.4g}" if isinstance(score, (int, float)) else ""
            log(f"trial {trial_id} ({by_worker.get(trial_id, '?')}): {status.lower()}{score_text}")
        seen[trial_id] = status


def _wait(launch, log, poll, chief_grace):
    """Until every worker has exited (the chief's failure first); returns the failed workers."""
    seen = {t: status for t, (status, _) in folder.trial_states(launch.out).items()}
    while any(launch.procs[n].poll() is None for n in launch.names):
        time.sleep(poll)
        _report_trials(launch.out, seen, log)
        chief = launch.procs[CHIEF]
        if chief.poll() is not None and chief.returncode != 0:
            raise _runfolder.RunError(f"{_process_failure(launch.out, CHIEF, chief.returncode)} "
                                      f"(log: {launch.out / 'chief.log'})")
    _report_trials(launch.out, seen, log)
    try:  # the oracle is saved after every trial; the chief would wait up to 20 s more
        launch.procs[CHIEF].wait(timeout=chief_grace)
    except subprocess.TimeoutExpired:
        pass
    return {n: launch.procs[n].returncode for n in launch.names if launch.procs[n].returncode}


def _failure(out, failed, names):
    """The error of a search whose workers failed (None when the others finished every trial)."""
    lines = [_process_failure(out, n, code) for n, code in failed.items()]
    left = folder.unfinished(out)
    if left:
        by_worker = folder.trial_workers(out)
        trials = ", ".join(f"{t} (run by {by_worker.get(t, '?')})" for t in left)
        return folder.SearchIncomplete(f"the search in {out} is not finished: trial(s) {trials} "
                                       f"did not end ({'; '.join(lines) or 'no worker failed'}); "
                                       "run the same command again to run them")
    if len(failed) == len(names):
        return _runfolder.RunError(f"every worker failed: {'; '.join(lines)} (logs: "
                                   f"{out}/tuner<i>.log)")
    return None


def search(spec, out, workers, data_root=None, log=print, poll=1.0, chief_grace=3.0, lock=None):
    """Run the search of ``spec`` with a chief and ``workers`` worker processes, then summarize it
    (:func:`keras_rnnreg.tuning.search.summarize`). ``lock``: the folder's, passed to them."""
    out = Path(out)
    prepared = searching.prepare(spec, out, data_root)  # data errors before any process starts
    folder.settle_oracle(out)
    launch = _Launch(out, workers, data_root, lock)
    log(f"KerasTuner distributed search: chief oracle on 127.0.0.1:{launch.port}, {workers} "
        f"workers; logs in {out}/chief.log, {out}/tuner<i>.log")
    try:
        launch.start(CHIEF)
        for name in launch.names:
            launch.start(name)
        failed = _wait(launch, log, poll, chief_grace)
        for name, code in failed.items():
            log(_process_failure(out, name, code))
    except KeyboardInterrupt:
        log("interrupted: stopping the chief and the workers. Run the same command again to "
            "continue the search (finished trials are kept; running ones start again).")
        raise
    finally:
        launch.stop()
        folder.settle_oracle(out)
    error = _failure(out, failed, launch.names)
    if error is not None:
        raise error
    return searching.summarize(prepared)
