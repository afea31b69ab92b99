"""Run folders that never lie: kill -9 at any instant, resume, one writer, interrupts.

Each test starts real ``rnnreg train`` processes (the backend of the test session) on a tiny
configuration with per-timestep weight noise, so the random state matters, and compares what a
killed-and-resumed run leaves with an uninterrupted run: the histories and the test numbers must be
identical.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest

from keras_rnnreg import _runfolder, training
from tests.conftest import stderr_lines

ROOT = Path(__file__).resolve().parent.parent
NAME = "jsb_rnn_ns"
EPOCHS = 3
TINY = ["model.units=4", "data.limit=6", "data.batch_size=2", "training.patience=none"]


_JAX_CACHE = {}


def _env(**extra):
    env = dict(os.environ)
    if keras.backend.backend() == "jax":  # the processes share compilations (same programs)
        import tempfile

        _JAX_CACHE.setdefault("dir", tempfile.mkdtemp(prefix="rnnreg-jax-cache-"))
        env.update(
            JAX_COMPILATION_CACHE_DIR=_JAX_CACHE["dir"],
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["KERAS_BACKEND"] = keras.backend.backend()
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.pop(_runfolder.FAULT_ENV, None)
    env.update(extra)
    return env


def _command(run_dir, *more):
    args = [
        sys.executable,
        "-m",
        "keras_rnnreg.cli",
        "train",
        NAME,
        "--data",
        "synthetic",
        "--out",
        str(run_dir),
        "--epochs",
        str(EPOCHS),
        "--quiet",
    ]
    for item in TINY:
        args += ["--set", item]
    return args + list(more)


def _run(run_dir, *more, timeout=240, **env):
    return subprocess.run(
        _command(run_dir, *more),
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=run_dir.parent,
    )


def _outcome(run_dir):
    state = json.loads((run_dir / training.STATE).read_text())
    report = json.loads((run_dir / training.REPORT).read_text())
    return state["history"], report["ours"], report["best_epoch"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = _run(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return _outcome(run_dir)


def _finish(run_dir, attempts=6):
    for _ in range(attempts):
        done = _run(run_dir, "--resume")
        if done.returncode == 0:
            return done
    raise AssertionError(f"resume did not finish: {done.stderr[-3000:]}")


@pytest.mark.parametrize("point", ["after_checkpoint:2", "after_commit:2"])
def test_kill_at_the_commit_instants_then_resume_equals_an_uninterrupted_run(
    tmp_path, reference, point
):
    run_dir = tmp_path / "run"
    killed = _run(run_dir, **{_runfolder.FAULT_ENV: point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    state = json.loads((run_dir / training.STATE).read_text())
    assert state["epoch"] == (1 if point.startswith("after_checkpoint") else 2)
    if point.startswith("after_checkpoint"):  # the uncommitted epoch's checkpoint is there, unnamed
        assert (run_dir / "checkpoints" / "epoch-0002.keras").exists()
    _finish(run_dir)
    assert _outcome(run_dir) == reference
    assert not (run_dir / "checkpoints" / "epoch-0002.keras").exists() or reference[2] == 2
    assert not [p for p in run_dir.rglob(".*") if "tmp" in p.name]


def test_kill_at_random_instants_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    run_dir = tmp_path / "run"
    rng = random.Random(0)
    kills, window = 0, 1.0
    while kills < 3 and not (run_dir / training.REPORT).exists():
        more = ["--resume"] if (run_dir / training.CONFIG).exists() else []
        started = (run_dir / training.CONFIG).stat().st_mtime if more else 0.0
        process = subprocess.Popen(
            _command(run_dir, *more),
            env=_env(),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Wait for training to begin (config.json is (re)written just before), then kill at a
            # random instant of the next second: inside a batch, a validation, a checkpoint write.
            deadline = time.time() + 120
            while process.poll() is None and time.time() < deadline:
                config = run_dir / training.CONFIG
                if config.exists() and config.stat().st_mtime > started:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, window))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
        finally:
            process.wait(timeout=60)
        if kills == 0 and (run_dir / training.REPORT).exists() and window > 0.05:
            # A fast machine finished before the first kill: start over with a shorter window.
            shutil.rmtree(run_dir)
            window /= 4
    assert kills >= 1
    if not (run_dir / training.REPORT).exists():
        _finish(run_dir)
    assert _outcome(run_dir) == reference


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with _runfolder.RunLock(run_dir):
        busy = _run(run_dir)
    assert busy.returncode == 2
    assert f"pid {os.getpid()}" in busy.stderr and "in use" in busy.stderr
    assert len(stderr_lines(busy.stderr)) == 1
    assert not (run_dir / training.CONFIG).exists()


def test_lock_is_released_when_its_holder_is_killed(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from keras_rnnreg import _runfolder; "
            "_runfolder.RunLock(sys.argv[1]).acquire(); print('locked', flush=True); "
            "time.sleep(60)",
            str(run_dir),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(_runfolder.RunLockedError, match=f"pid {holder.pid}"):
            _runfolder.RunLock(run_dir).acquire()
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    with _runfolder.RunLock(run_dir):  # recovered: the kernel dropped the dead holder's lock
        pass


def test_ctrl_c_stops_within_batches_exits_130_and_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    # Many batches per epoch so that an interrupt lands inside an epoch.
    args = _command(run_dir)
    args[args.index("--epochs") + 1] = "50"
    process = subprocess.Popen(
        args, env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 120
        while not (run_dir / training.STATE).exists() and time.time() < deadline:
            time.sleep(0.1)
        assert (run_dir / training.STATE).exists(), "no epoch finished in time"
        sent = time.time()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        stopped_in = time.time() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err[-3000:]
    assert "--resume" in err and str(run_dir) in err
    assert stopped_in < 10
    state = json.loads((run_dir / training.STATE).read_text())
    assert 1 <= state["epoch"] < 50 and not state["finished"]
    assert not [p for p in run_dir.rglob(".*") if "tmp" in p.name]
