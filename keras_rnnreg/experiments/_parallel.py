"""Many runs of a card at once: ``rnnreg reproduce CARD --jobs N [--devices 0,1]``.

Each run (entry x seed) is a child process (``python -m keras_rnnreg.experiments._parallel SPEC``)
training into its run folder (:func:`keras_rnnreg.experiments._runs.train_run`) with its output in
``RUN_DIR/train.log``, whose progress lines (``MARK``) the parent's live display reads;
:mod:`keras_rnnreg._processes` gives each child its device and stops them on Ctrl-C.
"""

import collections
import contextlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from keras_rnnreg import _processes, _runfolder, zoo
from keras_rnnreg.experiments import _runs

LOG = "train.log"
MARK = "[rnnreg-progress] "


# ------------------------------------------------------------------------------------ child
def _progress_callback(total):
    """One machine-readable line per epoch for the parent's progress display."""
    import keras

    return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: print(
        MARK + json.dumps({"epoch": epoch + 1, "total": total, "logs": _runfolder.scalars(logs)}),
        flush=True))


def _child(spec_json):
    """Train one run (the child process); the report gets ``wall_s`` like a sequential run's."""
    spec = json.loads(spec_json)
    run, run_dir = spec["run"], Path(spec["run_dir"])

    _processes.stop_on_sigterm()
    _processes.stop_when_orphaned()
    resume = (run_dir / _runfolder.CONFIG).exists()
    config = None if run["epochs"] else zoo.resolve(run["name"], run["overrides"] or None)
    total = run["epochs"] or config["training"]["epochs"]
    print(MARK + json.dumps({"start": True, "resume": resume, "total": total}), flush=True)
    _runs.train_run(run, run_dir, resume, verbose=2, log=lambda msg: print(msg, flush=True),
                    callbacks=[_progress_callback(total)])
    return 0


# ----------------------------------------------------------------------------------- parent
class Job:
    def __init__(self, run, run_dir):
        self.run, self.run_dir = run, Path(run_dir)
        self.label = f"{run['key']} s{run['seed']}"
        self.state, self.resume, self.logs, self.offset = "waiting", False, {}, 0
        self.proc = self.log = self.device = self.epoch = self.total = None
        self.started = self.ended = self.error = self.result = None

    def start(self, device, shared):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resume, self.device = (self.run_dir / _runfolder.CONFIG).exists(), device
        self.log = open(self.run_dir / LOG, "ab")
        self.offset = (self.run_dir / LOG).stat().st_size
        spec = json.dumps({"run": self.run, "run_dir": str(self.run_dir)})
        self.proc = subprocess.Popen(  # a new session: Ctrl-C reaches the parent, which stops it
            [sys.executable, "-m", "keras_rnnreg.experiments._parallel", spec], stdout=self.log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_processes.child_env(device, shared), start_new_session=True)
        self.state, self.started = "resuming" if self.resume else "training", time.time()

    def read(self):
        """Parse the new progress lines of the log; True when something changed."""
        try:
            with open(self.run_dir / LOG, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return False
        end = data.rfind(b"\n")
        if end < 0:
            return False
        self.offset += end + 1
        changed = False
        for line in data[:end].decode("utf-8", "replace").splitlines():
            if line.startswith(MARK):
                event = json.loads(line[len(MARK) :])
                self.total = event.get("total", self.total)
                if "epoch" in event:
                    self.epoch, self.logs = event["epoch"], event["logs"]
                changed = True
        return changed

    def close(self):
        if self.log is not None:
            self.log.close()
            self.log = None

    def elapsed(self):
        if self.started is None:
            return ""
        s = int((self.ended or time.time()) - self.started)
        return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"

    def line(self, width):
        parts = [f"{self.label:<{width}}", f"{self.state:<9}"]
        if self.epoch:
            val = [(k, v) for k, v in self.logs.items() if k.startswith("val_")]
            shown = val[:2] or list(self.logs.items())[:1]
            parts += [f"epoch {self.epoch}/{self.total}", *(f"{k} {v:.4g}" for k, v in shown)]
        elif self.state in ("training", "resuming"):
            parts.append("starting")
        if self.state == "done" and self.result is not None:
            parts.append(f"{self.result['metric']} = {self.result['ours']:.4g} "
                         f"(paper {self.run.get('paper')})")
        if self.state == "failed":
            parts.append(self.error or "")
        parts += [f"device {self.device}" if self.device is not None else "", self.elapsed()]
        return "  ".join(p for p in parts if p)


class Display:
    """One line per run: rewritten in place on a terminal, printed per event otherwise."""

    def __init__(self, jobs, stream, log, tty=None, every_epoch=False):
        self.jobs, self.stream, self.log = jobs, stream, log
        self.tty = (stream is not None and stream.isatty()) if tty is None else tty
        self.every_epoch = every_epoch
        self.width = max((len(j.label) for j in jobs), default=8)
        self.drawn = 0

    def event(self, job, what=None):
        if not self.tty and (what is not None or self.every_epoch):
            self.log(job.line(self.width))

    def draw(self):
        if not self.tty:
            return
        cols, rows = 200, 1000
        with contextlib.suppress(OSError, ValueError, AttributeError):
            cols, rows = os.get_terminal_size(self.stream.fileno())
        jobs, summary = self.jobs, []
        if len(jobs) > rows - 2:  # more runs than lines: the running ones and a count of the others
            running = [j for j in jobs if j.state in ("training", "resuming", "stopped")]
            jobs = running[: max(1, rows - 3)]
            counts = collections.Counter(j.state for j in self.jobs)
            summary = [", ".join(f"{n} {state}" for state, n in sorted(counts.items()))]
        lines = [j.line(self.width)[: cols - 1] for j in jobs] + summary
        self.stream.write("\x1b[F" * self.drawn + "\x1b[J" + "".join(f"{x}\n" for x in lines))
        self.stream.flush()
        self.drawn = len(lines)


def run(runs, out, jobs=2, devices=None, verbose=0, log=print, stream=None, poll=0.5):
    """Train ``runs`` (of :func:`keras_rnnreg.experiments.cards.plan`) in up to ``jobs`` processes.

    Returns ``(reports, failures)`` as the sequential loop of ``cards.reproduce`` makes them:
    ``[(run, report), ...]`` and ``[{"key", "seed", "error"}, ...]``. Runs with a ``report.json``
    are not run again.
    """
    devices = [str(d) for d in devices] if devices else [None]
    reports, failures, todo = [], [], []
    for run in runs:
        report = _runfolder.finished_report(_runs.run_folder(out, run))
        if report is not None:
            log(f"{run['key']} seed {run['seed']}: done before ({report['ours']:.4g})")
            reports.append((run, report))
        else:
            todo.append(Job(run, _runs.run_folder(out, run)))
    if not todo:
        return reports, failures
    jobs = max(1, int(jobs))
    log(f"{len(todo)} runs, up to {jobs} at a time"
        + (f" on devices {','.join(devices)}" if devices[0] else "")
        + f"; logs in {out}/<entry>/seed<S>/{LOG}")
    display = Display(todo, stream, log, every_epoch=verbose > 0)
    waiting, running = list(todo), []
    per_device = {d: 0 for d in devices}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                job, device = waiting.pop(0), min(devices, key=lambda d: per_device[d])
                per_device[device] += 1
                job.start(device, shared=jobs > len(devices))
                running.append(job)
                display.event(job, "start")
            time.sleep(poll)
            for job in list(running):
                if job.read():
                    display.event(job)
                code = job.proc.poll()
                if code is None:
                    continue
                job.read()
                job.close()
                job.ended = time.time()
                running.remove(job)
                per_device[job.device] -= 1
                job.result = _runfolder.finished_report(job.run_dir) if code == 0 else None
                if job.result is not None:
                    job.state = "done"
                    reports.append((job.run, job.result))
                else:
                    job.state = "failed"
                    job.error = (f"exit status {code}: "
                                 f"{_processes.last_error(job.run_dir / LOG, skip=(MARK,))}")
                    failures.append({"key": job.run["key"], "seed": job.run["seed"],
                                     "error": f"{job.error} (log: {job.run_dir / LOG})"})
                display.event(job, job.state)
            display.draw()
    except KeyboardInterrupt:
        _processes.stop_processes([job.proc for job in running])
        for job in running:
            job.state = "stopped"
        display.draw()
        log(f"interrupted: stopped {len(running)} runs ({len(waiting)} not started). Run the same "
            "command again to continue: finished runs are skipped, interrupted ones resume from "
            "their last epoch.")
        raise
    finally:
        for job in running:
            job.close()
    return reports, failures


if __name__ == "__main__":
    try:
        raise SystemExit(_child(sys.argv[1]))
    except KeyboardInterrupt:
        print("interrupted; the run resumes from its last finished epoch", flush=True)
        raise SystemExit(130) from None
    except Exception as err:  # the traceback, then the one line the parent reports
        traceback.print_exc()
        print(_processes.error_line(err), flush=True)
        raise SystemExit(1) from None
