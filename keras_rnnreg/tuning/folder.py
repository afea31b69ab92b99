"""The tuner folder (``rnnreg tune --out``): one writer, the job it was made with, files checked.

Besides KerasTuner's files: ``run.lock`` (:class:`keras_rnnreg._runfolder.RunLock`, held by
``rnnreg tune`` and inherited by the processes of a distributed search), ``job.json`` (the spec of
:func:`keras_rnnreg.tuning.specs.plan` and a record of every start), ``trial_*/worker.json`` (the
process that ran the trial) and, once every trial has finished, ``best.json``. :func:`claim` is
the way in.
"""

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from keras_rnnreg import _runfolder
from keras_rnnreg._runfolder import RunError

__all__ = ["FINISHED", "JOB_FILE", "SearchIncomplete", "WORKER_FILE", "claim", "check_files",
           "settle_oracle", "trial_states", "trial_workers", "unfinished"]

JOB_FILE = "job.json"
WORKER_FILE = "worker.json"
ORACLE = "oracle.json"
FINISHED = ("COMPLETED", "FAILED")  # a trial in another state runs again when the search continues
#: Keys of the spec that a continued search may change (max_trials only upwards); the others
#: (search space, objective, per-trial budget, model, data, seed, tuner) are refused.
CONTINUE_SAFE = ("max_trials",)
NOT_COMPARED = ("job", "stem", "quick", "data_root")  # where the job is, not what it searches
#: The keys KerasTuner reads back from each file (Oracle.set_state, Trial.from_state).
ORACLE_KEYS = ("ongoing_trials", "hyperparameters", "start_order", "end_order", "run_times",
               "retry_queue", "seed", "seed_state", "tried_so_far", "id_to_hash", "display")
TRIAL_KEYS = ("trial_id", "hyperparameters", "metrics", "score", "best_step", "status", "message")
_FILES = ((ORACLE, "KerasTuner oracle state", ORACLE_KEYS),
          ("tuner*.json", "KerasTuner tuner state", ()),
          ("chief.json", "KerasTuner tuner state", ()),
          ("trial_*/trial.json", "KerasTuner trial record", TRIAL_KEYS),
          (f"trial_*/{WORKER_FILE}", "record of the process that ran the trial", ("tuner_id",)),
          ("trial_*/build_config.json", "KerasTuner build record of the trial's model", ()))


class SearchIncomplete(RunError):
    """The processes of a search ended with trials still unfinished (a worker died)."""


def _read(path, what, keys=()):
    data = _runfolder.read_json(path, what)
    missing = [k for k in keys if k not in data]
    if missing:
        raise RunError(f"{path}: expected the keys {', '.join(missing)}; the {what} is damaged")
    return data


def check_files(out):
    """Read back every JSON file of the tuner folder ``out``; :class:`RunError` naming the first
    damaged one (what it is and what was expected). Nothing is written."""
    out = Path(out)
    hint = f"; nothing in {out} was changed (restore the file, or choose another --out)"
    try:
        if (out / JOB_FILE).exists():
            record = _read(out / JOB_FILE, "record of the search's job", ("spec", "starts"))
            if not isinstance(record["spec"], dict):
                raise RunError(f"{out / JOB_FILE}: expected 'spec' to be an object; the record of "
                               "the search's job is damaged")
        for pattern, what, keys in _FILES:
            for path in sorted(out.glob(pattern)):
                _read(path, what, keys)
    except RunError as err:
        raise RunError(f"{err}{hint}") from None


def _short(value):
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else "<changed>"


def check_job(out, spec):
    """:class:`RunError` when ``spec`` would change the search recorded in ``out``; returns
    ``{key: [old, new]}`` of the allowed changes."""
    path = Path(out) / JOB_FILE
    if not path.exists():
        return {}
    old = _runfolder.read_json(path)["spec"]
    spec = json.loads(json.dumps(_runfolder.jsonable(spec)))  # as recorded (tuples are lists)
    keys = sorted((set(old) | set(spec)) - set(NOT_COMPARED))
    changed = {k: [old.get(k), spec.get(k)] for k in keys if old.get(k) != spec.get(k)}
    unsafe = {k: v for k, v in changed.items() if k not in CONTINUE_SAFE}
    if "max_trials" in changed and (spec["max_trials"] or 0) < (old["max_trials"] or 0):
        unsafe["max_trials"] = changed["max_trials"]
    if unsafe:
        new = ", ".join(f"{k}={_short(v[1])}" for k, v in unsafe.items())
        made = ", ".join(f"{k}={_short(v[0])}" for k, v in unsafe.items())
        raise RunError(f"cannot continue the search in {out} with {new}: it was made with {made}; "
                       "a continued search keeps its model, data, search space, objective and "
                       "per-trial budget (only max_trials may change, upwards, and --workers); "
                       "choose another --out for a new search")
    return changed


def _record(out, spec, workers, changed):
    path = Path(out) / JOB_FILE
    starts = _runfolder.read_json(path)["starts"] if path.exists() else []
    starts.append({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "pid": os.getpid(),
                   "workers": workers, "max_trials": spec["max_trials"], "changed": changed,
                   "command": " ".join(sys.argv)})
    _runfolder.write_json_atomic(path, {"spec": spec, "starts": starts})


@contextlib.contextmanager
def claim(out, spec, workers=0):
    """Hold the lock of the tuner folder ``out`` (made if missing) for a search of ``spec``.

    :class:`RunError` when another process holds it, a file is damaged (all are read back before
    anything is written) or the job would change the recorded search. A folder made here and left
    without a trial is removed again on failure.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; expected a tuner folder (a new or an existing one)")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = _runfolder.RunLock(out).acquire()
    except _runfolder.RunLockedError as err:
        raise RunError(str(err).replace("another run", "another search")) from None
    try:
        check_files(out)
        _record(out, spec, workers, check_job(out, spec))
        _runfolder.sweep_temporaries(out, *out.glob("trial_*"))  # of writes a kill interrupted
        yield lock
    except BaseException:
        if created and not (out / ORACLE).exists():
            (out / JOB_FILE).unlink(missing_ok=True)
            lock.release()
            _runfolder.remove_empty_run_folder(out)
        raise
    finally:
        lock.release()


def trial_states(out):
    """``{trial_id: (status, score)}`` of the trial files that can be read now."""
    states = {}
    for path in Path(out).glob("trial_*/trial.json"):
        try:
            trial = json.loads(path.read_text())
            states[trial["trial_id"]] = (trial.get("status"), trial.get("score"))
        except (OSError, ValueError, KeyError, TypeError):  # being written (or damaged: see claim)
            continue
    return states


def trial_workers(out):
    """``{trial_id: tuner_id}`` of the trials whose process is recorded (``worker.json``)."""
    found = {}
    for path in sorted(Path(out).glob(f"trial_*/{WORKER_FILE}")):
        try:
            found[path.parent.name[len("trial_"):]] = json.loads(path.read_text())["tuner_id"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def unfinished(out):
    """Ids of the trials that began and neither completed nor failed (they run again)."""
    return sorted(t for t, (status, _) in trial_states(out).items() if status not in FINISHED)


def settle_oracle(out):
    """Drop the trials that ended from the chief's saved ``ongoing_trials``; returns their ids.

    KerasTuner's chief saves ``oracle.json`` in ``end_trial`` before it removes the trial from
    ``ongoing_trials``, and (unlike a tuner without workers) nothing saves it afterwards, so the
    last trial to end stays "ongoing" on disk. A reloading oracle sends ongoing trials for retry:
    that finished trial would be run again. Called before the chief starts and after it stopped.
    A trial still RUNNING (its worker died) stays ongoing: the next search runs it again.
    """
    path = Path(out) / ORACLE
    try:
        state = json.loads(path.read_text())
        ongoing = dict(state["ongoing_trials"])
    except (OSError, ValueError, KeyError, TypeError):  # missing, or damaged (claim reports it)
        return []
    statuses = {trial_id: status for trial_id, (status, _) in trial_states(out).items()}
    ended = {t: i for t, i in ongoing.items() if statuses.get(i, "RUNNING") != "RUNNING"}
    if ended:
        state["ongoing_trials"] = {t: i for t, i in ongoing.items() if t not in ended}
        _runfolder.atomic_write(path, json.dumps(state))
    return sorted(ended.values())
