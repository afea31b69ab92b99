"""Every error a user can cause: one line naming the file / key / value, exit status 2.

Bad data, damaged run folders, bad numbers on the command line, in cards and in tuner jobs; and
the settings that used to be accepted and ignored.
"""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import scipy.io

from keras_rnnreg import cli, training
from keras_rnnreg.zoo import ConfigError
from tests.conftest import stderr_lines

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--set", "model.units=4", "--set", "data.limit=4", "--set", "data.batch_size=4"]


def fails(capsys, argv, *expected):
    """Run the CLI in-process; assert exit 2 and one line on stderr holding every ``expected``."""
    try:
        code = cli.main([str(a) for a in argv], out=io.StringIO())
    except SystemExit as exit:  # argparse's errors
        code = exit.code
    err = capsys.readouterr().err
    lines = stderr_lines(err)
    assert code == 2, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    for text in expected:
        assert str(text) in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    code = cli.main(
        [
            "train",
            "jsb_rnn_plain",
            "--data",
            "synthetic",
            "--epochs",
            "2",
            "--out",
            str(run_dir),
            "--quiet",
            *TINY,
        ],
        out=io.StringIO(),
    )
    assert code == 0
    return run_dir


def _copy(run_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(run_dir, target, copy_function=shutil.copy2)
    return target


# ------------------------------------------------------------------------------------ bad data
def _mat_bytes(tmp_path):
    path = tmp_path / "good.mat"
    cells = np.empty(2, dtype=object)
    for i in range(2):
        cells[i] = (np.random.default_rng(i).random((6, 88)) < 0.1).astype(float)
    scipy.io.savemat(path, {"traindata": cells, "validdata": cells, "testdata": cells})
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "wrong_keys"])
def test_bad_mat_files(capsys, tmp_path, kind):
    path = tmp_path / f"{kind}.mat"
    if kind == "truncated":
        path.write_bytes(_mat_bytes(tmp_path)[:300])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        scipy.io.savemat(path, {"train": np.zeros((3, 88))})
    fails(capsys, ["train", "jsb_rnn_plain", "--data", path, "--out", tmp_path / "run"], path.name)


def test_corrupt_midi(capsys, tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / "midi" / split).mkdir(parents=True)
        (tmp_path / "midi" / split / "a.mid").write_bytes(b"MThd this is not midi")
    fails(
        capsys,
        ["train", "jsb_rnn_plain", "--data", tmp_path / "midi", "--out", tmp_path / "run"],
        "a.mid",
    )


@pytest.mark.parametrize("kind", ["unknown_character", "not_utf8"])
def test_bad_ptb_files(capsys, tmp_path, kind):
    folder = tmp_path / "ptb"
    folder.mkdir()
    (folder / "ptb.char.valid.txt").write_text("a b c _ a b\nc a b _ c\n" * 20)
    if kind == "unknown_character":
        (folder / "ptb.char.test.txt").write_text("a b z\n")
        expected = "ptb.char.test.txt"
    else:
        (folder / "ptb.char.test.txt").write_bytes(b"a b \xff\xfe c\n")
        expected = "not a UTF-8"
    fails(capsys, ["train", "ptb_lstm_ns", "--data", folder, "--out", tmp_path / "run"], expected)


# --------------------------------------------------------------------------- damaged run folders
def test_corrupt_checkpoint(capsys, tmp_path, finished_run):
    run_dir = _copy(finished_run, tmp_path)
    state = json.loads((run_dir / "state.json").read_text())
    checkpoint = run_dir / "checkpoints" / state["best_checkpoint"]
    data = checkpoint.read_bytes()
    for name in ("best.keras", "last.keras", state["best_checkpoint"], state["last_checkpoint"]):
        (run_dir / "checkpoints" / name).unlink(missing_ok=True)
        (run_dir / "checkpoints" / name).write_bytes(data[: len(data) // 2])  # truncated
    fails(capsys, ["evaluate", run_dir], state["best_checkpoint"], "cannot load the checkpoint")
    fails(
        capsys,
        ["train", "jsb_rnn_plain", "--out", run_dir, "--resume", "--epochs", "3"],
        "cannot load",
    )


@pytest.mark.parametrize("name", ["state.json", "config.json"])
def test_corrupt_run_files(capsys, tmp_path, finished_run, name):
    run_dir = _copy(finished_run, tmp_path)
    (run_dir / name).write_text('{"epoch": 2, "hist')
    fails(
        capsys,
        ["train", "jsb_rnn_plain", "--out", run_dir, "--resume", "--epochs", "3"],
        name,
        "not valid JSON",
    )
    fails(capsys, ["evaluate", run_dir], name)


def test_missing_last_checkpoint_is_refused_and_nothing_changes(capsys, tmp_path, finished_run):
    run_dir = _copy(finished_run, tmp_path)
    state = json.loads((run_dir / "state.json").read_text())
    (run_dir / "checkpoints" / state["last_checkpoint"]).unlink()
    before = {
        p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != "run.lock"
    }
    fails(
        capsys,
        ["train", "jsb_rnn_plain", "--out", run_dir, "--resume", "--epochs", "4"],
        "2 epoch(s) are done",
        state["last_checkpoint"],
        "missing",
    )
    after = {
        p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != "run.lock"
    }
    assert after == before  # history, best checkpoint, config: untouched


def test_out_is_a_file(capsys, tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    fails(capsys, ["train", "jsb_rnn_plain", "--out", path], str(path), "is a file")


# ------------------------------------------------------------------------------- bad numbers
def test_bad_counts_on_the_command_line(capsys, tmp_path):
    fails(capsys, ["train", "jsb_rnn_plain", "--seed", "-5"], "--seed", "'-5'", "integer >= 0")
    fails(capsys, ["train", "jsb_rnn_plain", "--epochs", "0"], "--epochs", "integer >= 1")
    fails(capsys, ["reproduce", "zoo/noise_table1.toml", "--seeds", "a,b"], "--seeds", "'a'")
    fails(capsys, ["reproduce", "zoo/noise_table1.toml", "--epochs", "0"], "--epochs")
    with pytest.raises(ConfigError, match="seed=-5"):
        training.train("jsb_rnn_plain", tmp_path / "run", seed=-5)
    with pytest.raises(ConfigError, match="epochs=0"):
        training.train("jsb_rnn_plain", tmp_path / "run", epochs=0)


CARD = """
title = "t"
{card}
[[entry]]
name = "jsb_rnn_plain"
{entry}
[quick]
data = "synthetic"
"""


@pytest.mark.parametrize(
    "card,entry,expected",
    [
        ('seeds = "zero"', "", "seeds = 'zero'"),
        ("seeds = [-1]", "", "seeds = [-1]"),
        ("", 'paper = "abc"', "paper = 'abc'"),
        ("", "epochs = 0", "epochs = 0"),
        ("", "seeds = [1, 1]", "distinct"),
    ],
)
def test_bad_card_values_fail_before_training(capsys, tmp_path, card, entry, expected):
    path = tmp_path / "card.toml"
    path.write_text(CARD.format(card=card, entry=entry))
    fails(capsys, ["reproduce", path, "--quick", "--out", tmp_path / "out"], "card.toml", expected)
    assert not list((tmp_path).glob("out/*/seed*"))


JOB = """
model = "jsb_rnn_ns"
{extra}
[quick]
data = "synthetic"
max_trials = 1
epochs = 1
set = ["model.units=4", "data.limit=4"]
"""


@pytest.mark.parametrize(
    "extra,expected",
    [
        ("max_trials = -1", "max_trials = -1"),
        ("epochs = 0", "epochs = 0"),
        ('objective = "val_nll"', "objective='val_nll'"),
    ],
)
def test_bad_tuner_jobs_fail_before_any_trial(capsys, tmp_path, extra, expected):
    path = tmp_path / "job.toml"
    path.write_text(JOB.format(extra=extra))
    line = fails(
        capsys, ["tune", path, "--quick", "--out", tmp_path / "tune"], "job.toml", expected
    )
    if "objective" in extra:
        assert "val_nll_per_timestep" in line  # says what is expected
    assert not (tmp_path / "tune").exists()


# -------------------------------------------------------------- settings that must do something
def test_max_steps_per_epoch_caps_the_batches(tmp_path):
    class Count(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = []

        def on_epoch_begin(self, epoch, logs=None):
            self.batches.append(0)

        def on_train_batch_end(self, batch, logs=None):
            self.batches[-1] += 1

    count = Count()
    training.train(
        "jsb_rnn_plain",
        tmp_path / "run",
        data="synthetic",
        epochs=2,
        verbose=0,
        log=lambda m: None,
        overrides=[
            "model.units=4",
            "data.limit=12",
            "data.batch_size=1",
            "training.max_steps_per_epoch=3",
        ],
        callbacks=[count],
    )
    assert count.batches == [3, 3]


def test_misspelt_monitor_fails_before_the_run_folder_is_made(capsys, tmp_path):
    fails(
        capsys,
        [
            "train",
            "jsb_rnn_plain",
            "--data",
            "synthetic",
            "--out",
            tmp_path / "run",
            "--set",
            "training.monitor=val_los",
            *TINY,
        ],
        "training.monitor='val_los'",
        "val_loss",
    )
    assert not (tmp_path / "run").exists()  # nothing left behind


def test_nan_give_up_is_one_line_and_keeps_no_nan_row(capsys, tmp_path):
    run_dir = tmp_path / "run"
    # A linear read-out with a huge step overflows to inf in the first epoch, every time.
    fails(
        capsys,
        [
            "train",
            "adding_irnn",
            "--data",
            "synthetic",
            "--out",
            run_dir,
            "--epochs",
            "2",
            "--quiet",
            "--set",
            "model.units=3",
            "--set",
            "data.length=6",
            "--set",
            "data.limit=8",
            "--set",
            "data.batch_size=1",
            "--set",
            "optimizer.learning_rate=1e30",
            "--set",
            "training.max_restarts=1",
        ],
        "non-finite",
        "max_restarts",
        "--resume",
    )
    history = run_dir / "history.csv"
    assert not history.exists() or "nan" not in history.read_text().lower()


def test_nan_test_score_is_reported_as_such():
    report = {
        "name": "x",
        "metric_label": "test NLL",
        "ours": float("nan"),
        "paper": 8.58,
        "relative_difference": None,
        "paper_table": "Table 1",
        "comparable": True,
        "best_epoch": 1,
        "epochs_run": 1,
        "run_dir": "runs/x",
    }
    text = training.format_report(report)
    assert "nan%" not in text and "not a finite number" in text


def test_run_files_have_ordinary_permissions(finished_run):
    mask = os.umask(0)
    os.umask(mask)
    expected = 0o666 & ~mask
    for name in (
        "config.json",
        "state.json",
        "history.csv",
        "report.json",
        "checkpoints/best.keras",
    ):
        assert (finished_run / name).stat().st_mode & 0o777 == expected, name


def test_saved_zoo_model_loads_after_importing_the_package_alone(finished_run):
    code = (
        "import sys, keras, keras_rnnreg; "
        "m = keras.saving.load_model(sys.argv[1]); print(type(m.layers[1]).__module__)"
    )
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        KERAS_BACKEND=keras.backend.backend(),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(finished_run / "checkpoints" / "best.keras")],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "keras_rnnreg" in done.stdout
