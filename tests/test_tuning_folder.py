"""What a tuner folder guarantees (README, "What a run folder guarantees"): one writer, the job it
was made with, a search finished only when every trial is, damaged files refused in one line.

Cases about the job record and damaged files run in-process (``cli.main``): they are refused
before any data is loaded or any process started (``--workers`` included). Cases about processes
(two ``rnnreg tune`` on one folder, Ctrl-C, a worker killed mid-trial) start real ``rnnreg tune``
processes over 127.0.0.1 on tiny trials.
"""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import pytest

from keras_rnnreg import _processes, _runfolder, cli
from keras_rnnreg.tuning import folder, run_job
from tests.conftest import stderr_lines

ROOT = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()
STARTUP = 240  # seconds a loaded 2-core machine may take to start a search's processes
JOB = """
model = "jsb_rnn_ns"
space = "noise_study_table2"
tuner = "random"
max_trials = {max_trials}
epochs = 1
seed = 1
objective = "val_nll_per_timestep"
data = "synthetic"
set = ["model.units=4", "data.limit=4"]
"""


def _job(tmp_path, name="job.toml", **values):
    path = tmp_path / name
    path.write_text(JOB.format(**{"max_trials": 1, **values}))
    return path


def _cli(capsys, *argv):
    """(exit status, our stderr lines) of an in-process ``rnnreg`` call."""
    code = cli.main([str(a) for a in argv], out=io.StringIO())
    return code, stderr_lines(capsys.readouterr().err)


def _snapshot(folder_path):
    return {str(p.relative_to(folder_path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder_path).rglob("*")) if p.is_file() and p.name != "run.lock"}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished one-trial search and its job file."""
    tmp = tmp_path_factory.mktemp("searched")
    job = _job(tmp)
    run_job(job, out_dir=tmp / "tune", log=lambda m: None)
    return job, tmp / "tune"


# ---------------------------------------------------------------------- the job it was made with
def test_a_changed_search_is_refused_with_the_keys_that_differ(capsys, tmp_path, searched):
    job, out = searched
    before = _snapshot(out)
    text = job.read_text()
    changes = {
        "epochs": text.replace("epochs = 1", "epochs = 2"),
        "space": text.replace('space = "noise_study_table2"', 'space = "norm_stabilizer_grid"'),
        "objective": text.replace('"val_nll_per_timestep"', '"val_loss"'),
        "overrides": text.replace("model.units=4", "model.units=5"),
        "two keys": text.replace("max_trials = 1", "max_trials = 1\npatience = 3").replace(
            "seed = 1", "seed = 2"),
        "executions_per_trial": text + "executions_per_trial = 2\n",
    }
    for key, changed in changes.items():
        path = tmp_path / f"{key.replace(' ', '_')}.toml"
        path.write_text(changed)
        code, lines = _cli(capsys, "tune", path, "--out", out)
        assert code == 2 and len(lines) == 1, lines
        assert f"cannot continue the search in {out} with" in lines[0], lines[0]
        if key == "two keys":  # two keys differ: both named, with both values
            assert "patience=3, seed=2: it was made with patience=" in lines[0], lines[0]
        else:
            assert f"with {key}=" in lines[0] and f"made with {key}=" in lines[0], lines[0]
    assert _snapshot(out) == before  # nothing of the folder was touched


def test_more_trials_and_workers_may_change_and_are_recorded(tmp_path):
    job = _job(tmp_path)
    out = tmp_path / "tune"
    run_job(job, out_dir=out, log=lambda m: None)
    job.write_text(job.read_text().replace("max_trials = 1", "max_trials = 2"))
    result = run_job(job, out_dir=out, log=lambda m: None)
    assert result["trials"] == 2
    record = json.loads((out / "job.json").read_text())
    assert record["spec"]["max_trials"] == 2 and record["spec"]["epochs"] == 1
    assert [s["changed"] for s in record["starts"]] == [{}, {"max_trials": [1, 2]}]
    job.write_text(job.read_text().replace("max_trials = 2", "max_trials = 1"))
    with pytest.raises(_runfolder.RunError, match=r"with max_trials=1: it was made with "
                       r"max_trials=2.*only max_trials may change, upwards"):
        run_job(job, out_dir=out, log=lambda m: None)


# ---------------------------------------------------------------------------- damaged files
DAMAGE = {
    "oracle.json": ("oracle.json", "not valid JSON", "KerasTuner oracle state"),
    "trial.json": ("trial_0/trial.json", "not valid JSON", "KerasTuner trial record"),
    "job.json": ("job.json", "not valid JSON", "record of the search's job"),
    "worker.json": ("trial_0/worker.json", "not valid JSON", "process that ran the trial"),
    "tuner0.json": ("tuner0.json", "not valid JSON", "KerasTuner tuner state"),
    "oracle keys": ("oracle.json", "expected the keys", "ongoing_trials"),
}


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_file_is_one_line_naming_it_and_nothing_is_lost(capsys, tmp_path, searched,
                                                                  case, workers):
    job, made = searched
    out = tmp_path / "tune"
    subprocess.run(["cp", "-a", str(made), str(out)], check=True)
    name, *expected = DAMAGE[case]
    path = out / name
    if case == "oracle keys":
        path.write_text(json.dumps({"seed": 1}))
    else:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated
    before = _snapshot(out)
    code, lines = _cli(capsys, "tune", job, "--out", out, "--workers", workers)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"rnnreg tune: error: {path}: ") and "nothing in" in lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    assert _snapshot(out) == before and not (out / "chief.log").exists()


def test_a_childs_failure_is_its_own_last_error_line(tmp_path):
    log = tmp_path / "tuner0.log"
    log.write_text("Search: Running Trial #1\nTraceback (most recent call last):\n  File ...\n"
                   "ValueError: bad\nerror: ValueError: bad value for x\n"
                   "I0000 00:00:1.0 12 cpu_feature_guard.cc:227] This TensorFlow binary\n"
                   "WARNING: All log messages before absl::InitializeLog() is called\n")
    assert _processes.last_error(log) == "error: ValueError: bad value for x"


# ------------------------------------------------------------------------------- processes
def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERASTUNER_", "RNNREG_FAULT"))}
    env.update(KERAS_BACKEND=BACKEND, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT), **extra)
    return env


def _tune(job, out, *extra, env=None):
    return subprocess.Popen([sys.executable, "-m", "keras_rnnreg", "tune", str(job), "--out",
                             str(out), *map(str, extra)], env=env or _env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(predicate, proc, what, timeout=STARTUP):
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {what}: {proc.stderr.read()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.3)


def _time_of_line(proc, text, timeout):
    """When ``proc`` wrote a stderr line holding ``text``."""
    seen = []

    def read():
        for line in proc.stderr:
            if text in line:
                seen.append(time.time())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert seen, f"no {text!r} line on stderr within {timeout} s"
    return seen[0]


def _open_files(pid):
    return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]


def _is_chief(proc, out):
    if not proc.name.isdigit():
        return False
    try:
        command = (proc / "cmdline").read_bytes().split(b"\0")
        environ = (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(out).encode() in command and b"KERASTUNER_TUNER_ID=chief" in environ


def _alive(pid):
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"  # not a zombie


def test_one_writer_held_by_chief_and_workers_and_ctrl_c_stops_within_seconds(tmp_path):
    job = _job(tmp_path, max_trials=500)
    out = tmp_path / "tune"
    first = _tune(job, out, "--workers", 1)
    _wait_for(lambda: any(out.glob("trial_*/worker.json")), first, "trial")
    worker = json.loads(next(out.glob("trial_*/worker.json")).read_text())["pid"]
    assert str(out / "run.lock") in _open_files(worker)  # held with the parent and the chief
    second = _tune(job, out)
    _, err = second.communicate(timeout=STARTUP)
    lines = stderr_lines(err)
    assert second.returncode == 2 and len(lines) == 1, err[-3000:]
    assert f"is in use by another search (pid {first.pid} on " in lines[0] and " since " in lines[0]
    chief = next(int(p.name) for p in Path("/proc").iterdir() if _is_chief(p, out))
    assert str(out / "run.lock") in _open_files(chief)
    started = time.time()
    os.killpg(first.pid, signal.SIGINT)  # Ctrl-C in the terminal: the parent's process group
    while _alive(worker) or _alive(chief):
        assert time.time() - started < 5, "the chief and the worker did not stop within 5 s"
        time.sleep(0.05)
    stopped = time.time() - started
    said = _time_of_line(first, "rnnreg tune: interrupted", timeout=60) - started
    first.wait(timeout=120)
    print(f"Ctrl-C: processes stopped after {stopped:.1f} s, rnnreg tune said so after {said:.1f}"
          f" s and exited after {time.time() - started:.1f} s")
    assert first.returncode == 130
    assert said < 5, f"Ctrl-C took {said:.1f} s"  # then Python's exit (seconds on a loaded machine)
    with _runfolder.RunLock(out):  # free again
        pass


def test_a_worker_killed_mid_trial_fails_the_search_naming_the_trial_and_the_rerun_finishes_it(
        tmp_path):
    job = _job(tmp_path, max_trials=2)
    out = tmp_path / "tune"
    first = _tune(job, out, "--workers", 2, env=_env(RNNREG_FAULT="tune-trial:1"))
    _, err = first.communicate(timeout=STARTUP * 2)
    lines = stderr_lines(err)
    assert first.returncode == 2 and len(lines) == 1, err[-3000:]
    assert f"the search in {out} is not finished: trial(s) 1 (run by tuner" in lines[0], lines[0]
    assert "was killed by SIGKILL" in lines[0] and "run the same command again" in lines[0]
    assert not (out / "best.json").exists() and folder.unfinished(out) == ["1"]
    done = {p.parent.name: p.stat().st_mtime for p in out.glob("trial_*/trial.json")
            if p.parent.name != "trial_1"}
    print(lines[0])
    # As when the killed worker was tuner0 and it had ended no trial: no tuner0.json, which a
    # search without workers needs to reload the oracle (else it started again from trial 0).
    (out / "tuner0.json").unlink(missing_ok=True)
    result = run_job(job, out_dir=out, log=lambda m: None)  # without workers: the same search
    best = json.loads((out / "best.json").read_text())
    assert result["trials"] == best["trials"] == 2 and folder.unfinished(out) == []
    assert {p.parent.name: p.stat().st_mtime for p in out.glob("trial_*/trial.json")
            if p.parent.name != "trial_1"} == done  # the finished trials were not run again
