"""KerasTuner's distributed mode on one machine: ``rnnreg tune JOB.toml --workers N``.

No scheduler of our own (README, "Distributed tuning"): this module only starts KerasTuner's
processes on the loopback address, each a ``python -m keras_rnnreg.tuning.distributed JOB ...``
that builds the same tuner as ``rnnreg tune`` and calls ``tuner.search``: the chief
(``KERASTUNER_TUNER_ID=chief``) serving the oracle over gRPC on ``127.0.0.1:<free port>``, and N
workers (``tuner0 .. tunerN-1``) that each write ``worker.json`` (its id) into the trials it runs.
KerasTuner's chief stops serving once a worker was told the search is over and no trial is running
(it polls every 20 s); the oracle's state is on disk after every trial, so when every worker has
exited this stops the chief at once. Then the parent reloads the search from ``OUT`` (as ``rnnreg
tune`` without workers does) and writes ``best.json``.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from keras_rnnreg import _processes, _runfolder

__all__ = ["search", "settle_oracle", "start_together", "trial_workers", "tuner_env"]

CHIEF = "chief"
WORKER_FILE = "worker.json"
BARRIER = "RNNREG_TUNE_START_TOGETHER"  # "<folder>|<launch id>|<workers>", set by search()


def start_together(timeout=300.0):
    """In a worker: wait until every worker of the launch has built its tuner (or ``timeout``).

    Not scheduling: KerasTuner still hands out the trials. Without it the worker that finishes
    importing first may take several trials before the others have connected.
    """
    spec = os.environ.get(BARRIER)
    if not spec or os.environ.get("KERASTUNER_TUNER_ID", CHIEF) == CHIEF:
        return
    folder, launch, count = spec.rsplit("|", 2)
    Path(folder, f".ready-{launch}-{os.environ['KERASTUNER_TUNER_ID']}").touch()
    deadline = time.time() + timeout
    while (len(list(Path(folder).glob(f".ready-{launch}-*"))) < int(count)
           and time.time() < deadline):
        time.sleep(0.2)


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


def trial_workers(project_dir):
    """``{trial_id: tuner_id}`` of the trials that a worker started (from ``worker.json``)."""
    found = {}
    for path in sorted(Path(project_dir).glob(f"trial_*/{WORKER_FILE}")):
        found[path.parent.name[len("trial_"):]] = json.loads(path.read_text())["tuner_id"]
    return found


def _trial_states(project_dir):
    states = {}
    for path in Path(project_dir).glob("trial_*/trial.json"):
        try:
            trial = json.loads(path.read_text())
        except (OSError, ValueError):  # being written
            continue
        states[trial["trial_id"]] = (trial.get("status"), trial.get("score"))
    return states


def settle_oracle(project_dir):
    """Drop the trials that ended from the chief's saved ``ongoing_trials``; returns their ids.

    KerasTuner's chief saves ``oracle.json`` in ``end_trial`` before it removes the trial from
    ``ongoing_trials``, and (unlike a tuner without workers) nothing saves it afterwards, so the
    last trial to end stays "ongoing" on disk. A reloading oracle sends ongoing trials for retry:
    that finished trial would be run again. Called before the chief starts and after it stopped.
    """
    path = Path(project_dir) / "oracle.json"
    if not path.exists():
        return []
    state = json.loads(path.read_text())
    statuses = {trial_id: status for trial_id, (status, _) in _trial_states(project_dir).items()}
    ended = {t: i for t, i in state.get("ongoing_trials", {}).items()
             if statuses.get(i, "RUNNING") != "RUNNING"}
    if ended:
        state["ongoing_trials"] = {t: i for t, i in state["ongoing_trials"].items()
                                   if t not in ended}
        _runfolder.atomic_write(path, json.dumps(state))
    return sorted(ended.values())


def _tail(path, n=5):
    return "\n".join(_processes.last_lines(path, n))


def search(job_path, workers, out, quick=False, data_root=None, log=print, poll=1.0,
           chief_grace=3.0, entry=None):
    """Run the search of a job with a chief and ``workers`` worker processes; returns when done."""
    from keras_rnnreg.tuning.jobs import JobError

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if ((out / "oracle.json").exists() and (out / "tuner0.json").exists()
            and not (out / f"{CHIEF}.json").exists()):
        # a search begun without workers: the chief reloads the oracle only when it finds its
        # own file
        shutil.copyfile(out / "tuner0.json", out / f"{CHIEF}.json")
    settle_oracle(out)
    port = free_port()
    argv = [sys.executable, "-m", "keras_rnnreg.tuning.distributed", str(job_path), "--out",
            str(out)]
    if quick:
        argv.append("--quick")
    if data_root:
        argv += ["--data-root", str(data_root)]
    if entry:
        argv += ["--entry", entry]
    logs, procs = {}, {}
    barrier = f"{out}|{port}-{os.getpid()}|{workers}"

    def start(tuner_id):
        logs[tuner_id] = open(out / f"{tuner_id}.log", "ab")
        procs[tuner_id] = subprocess.Popen(
            argv, stdout=logs[tuner_id], stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=tuner_env(tuner_id, port, barrier=barrier), start_new_session=True)

    log(f"KerasTuner distributed search: chief oracle on 127.0.0.1:{port}, {workers} workers; "
        f"logs in {out}/chief.log, {out}/tuner<i>.log")
    seen = {trial_id: status for trial_id, (status, _) in _trial_states(out).items()}
    try:
        start(CHIEF)
        for i in range(workers):
            start(f"tuner{i}")
        names = [f"tuner{i}" for i in range(workers)]
        while True:
            time.sleep(poll)
            by_worker = trial_workers(out)
            for trial_id, (status, score) in sorted(_trial_states(out).items()):
                if seen.get(trial_id) != status and status in ("COMPLETED", "FAILED", "INVALID"):
                    score_text = f", score {score:.4g}" if isinstance(score, (int, float)) else ""
                    log(f"trial {trial_id} ({by_worker.get(trial_id, '?')}): "
                        f"{status.lower()}{score_text}")
                seen[trial_id] = status
            chief = procs[CHIEF]
            if chief.poll() is not None and any(procs[n].poll() is None for n in names):
                if chief.returncode != 0:
                    raise JobError(f"the KerasTuner chief exited with status {chief.returncode}:\n"
                                   + _tail(out / "chief.log"))
            if all(procs[n].poll() is not None for n in names):
                break
        failed = [n for n in names if procs[n].returncode != 0]
        for name in failed:
            log(f"worker {name} exited with status {procs[name].returncode}: "
                f"{_tail(out / f'{name}.log', 1)}")
        try:  # the oracle is saved after every trial; the chief would wait up to 20 s more
            procs[CHIEF].wait(timeout=chief_grace)
        except subprocess.TimeoutExpired:
            pass
        if len(failed) == len(names):
            raise JobError(f"every worker failed; see {out}/tuner0.log:\n"
                           + _tail(out / "tuner0.log"))
    except KeyboardInterrupt:
        log("interrupted: stopping the chief and the workers. Run the same command again to "
            "continue the search (finished trials are kept; running ones start again).")
        raise
    finally:
        _processes.stop_processes(list(procs.values()))
        settle_oracle(out)
        for f in logs.values():
            f.close()
        for path in out.glob(".ready-*"):
            path.unlink()
    return trial_workers(out)


def _main(argv=None):
    import argparse

    from keras_rnnreg.tuning import jobs

    p = argparse.ArgumentParser(
        description="one process of a distributed search (started by rnnreg tune)")
    p.add_argument("job")
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--data-root")
    p.add_argument("--entry", help="the entry of a column job")
    args = p.parse_args(argv)

    _processes.stop_on_sigterm()
    _processes.stop_when_orphaned()
    jobs.run_job(args.job, quick=args.quick, out_dir=args.out, data_root=args.data_root,
                 log=lambda msg: print(msg, flush=True), entry=args.entry)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(_main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
