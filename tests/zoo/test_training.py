"""Training runs: run folder, resume after an interruption, reports, evaluate."""

import csv
import json

import keras
import numpy as np
import pytest

from keras_rnnreg import callbacks, training
from tests.training_helpers import EpochsSeen as _EpochsSeen
from tests.training_helpers import StopAfterEpoch

TINY = ["model.units=4", "data.limit=4", "data.batch_size=4", "training.patience=none"]


def _history_epochs(run_dir):
    with open(run_dir / training.HISTORY) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_interrupted_training_resumes_without_redoing_finished_epochs(tmp_path):
    run_dir = tmp_path / "run"
    first = _EpochsSeen()
    with pytest.raises(KeyboardInterrupt):
        training.train(
            "jsb_rnn_plain",
            run_dir,
            data="synthetic",
            epochs=4,
            overrides=TINY,
            verbose=0,
            callbacks=[first, StopAfterEpoch(2)],
            log=lambda m: None,
        )
    assert first.epochs == [0, 1]
    state = json.loads((run_dir / training.STATE).read_text())
    assert state["epoch"] == 2 and not state["finished"]
    assert (run_dir / "checkpoints" / "last.keras").exists()
    assert not (run_dir / training.REPORT).exists()
    assert _history_epochs(run_dir) == [0, 1]

    with pytest.raises(training.RunError, match="--resume"):
        training.train(
            "jsb_rnn_plain", run_dir, data="synthetic", epochs=4, overrides=TINY, verbose=0
        )

    second = _EpochsSeen()
    messages = []
    report = training.train(
        "jsb_rnn_plain", run_dir, resume=True, verbose=0, callbacks=[second], log=messages.append
    )
    assert second.epochs == [2, 3]  # epochs 3-4 only
    assert any("resuming" in m and "after epoch 2" in m for m in messages)
    assert _history_epochs(run_dir) == [0, 1, 2, 3]
    assert report["epochs_run"] == 4 and report["comparable"] is False
    assert np.isfinite(report["ours"]) and report["paper"] == 8.58
    saved = json.loads((run_dir / training.REPORT).read_text())
    assert saved["metric"] == "nll" and saved["name"] == "jsb_rnn_plain"
    # TensorBoard logs when the optional `tensorboard` package is there (test_callbacks: the files)
    assert (run_dir / "tensorboard" / "train").is_dir() == callbacks.tensorboard_available()
    config = json.loads((run_dir / training.CONFIG).read_text())
    assert config["config"]["model"]["units"] == 4 and config["run"]["data"] == "synthetic"


def test_early_stopping_and_best_checkpoint(tmp_path):
    # A learning rate of 0 never improves: patience 2 stops after epoch 3.
    report = training.train(
        "adding_irnn",
        tmp_path / "run",
        data="synthetic",
        epochs=10,
        overrides=[
            "model.units=3",
            "data.length=6",
            "data.limit=8",
            "learning_rate=0",
            "training.patience=2",
        ],
        verbose=0,
        log=lambda m: None,
    )
    assert report["stopped_early"] and report["epochs_run"] == 3 and report["best_epoch"] == 1
    assert report["metric"] == "mse" and "short_sighted_baseline" in report["test"]


def test_evaluate_run_and_missing_files(tmp_path):
    run_dir = tmp_path / "run"
    training.train(
        "ptb_lstm_ns",
        run_dir,
        data="synthetic",
        epochs=1,
        overrides=["model.units=4", "data.seq_len=6"],
        verbose=0,
        log=lambda m: None,
    )
    result = training.evaluate_run(run_dir)
    assert (
        result["metric"] == "bpc"
        and np.isfinite(result["ours"])
        and result["checkpoint"] == "best.keras"
    )
    with pytest.raises(training.RunError, match="missing config.json"):
        training.evaluate_run(tmp_path)
    with pytest.raises(training.RunError, match="does not exist"):
        training.evaluate_run(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text((run_dir / "config.json").read_text())
    with pytest.raises(training.RunError, match="no finished epoch yet"):
        training.evaluate_run(tmp_path / "half")


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    from keras_rnnreg.zoo.tasks import DATA_ROOT_ENV, DataNotFoundError

    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    with pytest.raises(DataNotFoundError, match="Nottingham.mat"):
        training.train("nottingham_rnn_plain", tmp_path / "run", data_root=str(tmp_path), verbose=0)


def _config(run_dir):
    return json.loads((run_dir / training.CONFIG).read_text())


def test_resume_checks_the_name_and_refuses_changes_to_the_run(tmp_path):
    run_dir = tmp_path / "run"
    training.train(
        "jsb_rnn_plain",
        run_dir,
        data="synthetic",
        epochs=1,
        overrides=TINY,
        verbose=0,
        log=lambda m: None,
    )
    before = (run_dir / training.CONFIG).read_text()
    with pytest.raises(training.RunError, match="it is a run of 'jsb_rnn_plain'"):
        training.train("ptb_lstm_ns", run_dir, resume=True, verbose=0)
    for override, key in (
        (["units=64"], "model.units"),
        (["optimizer.learning_rate=0.5"], "optimizer.learning_rate"),
        (["data.batch_size=2"], "data.batch_size"),
    ):
        with pytest.raises(training.RunError, match=f"{key}=.*the run was made with {key}="):
            training.train("jsb_rnn_plain", run_dir, resume=True, overrides=override, verbose=0)
    with pytest.raises(training.RunError, match="seed 0"):
        training.train("jsb_rnn_plain", run_dir, resume=True, seed=3, verbose=0)
    with pytest.raises(training.RunError, match="trained on 'synthetic'"):
        training.train("jsb_rnn_plain", run_dir, resume=True, data="music21-chorales", verbose=0)
    assert (run_dir / training.CONFIG).read_text() == before


def test_resume_applies_and_records_safe_changes_and_keeps_the_first_backend(tmp_path):
    run_dir = tmp_path / "run"
    training.train(
        "jsb_rnn_plain",
        run_dir,
        data="synthetic",
        epochs=1,
        overrides=TINY,
        verbose=0,
        log=lambda m: None,
    )
    saved = _config(run_dir)
    saved["run"]["backend"] = "another-backend"  # as if the first epoch had run elsewhere
    (run_dir / training.CONFIG).write_text(json.dumps(saved))
    seen = _EpochsSeen()
    report = training.train(
        "jsb_rnn_plain",
        run_dir,
        resume=True,
        epochs=3,
        overrides=["training.patience=7"],
        verbose=0,
        callbacks=[seen],
        log=lambda m: None,
    )
    assert seen.epochs == [1, 2] and report["epochs_run"] == 3
    config = _config(run_dir)
    assert (
        config["config"]["training"]["epochs"] == 3
        and config["config"]["training"]["patience"] == 7
    )
    assert config["run"]["backend"] == "another-backend"
    [resume] = config["run"]["resumes"]
    assert resume["after_epoch"] == 1 and resume["backend"] == keras.backend.backend()
    assert resume["changed"] == {"training.epochs": [1, 3], "training.patience": [None, 7]}
    assert _history_epochs(run_dir) == [0, 1, 2]


def test_resume_removes_temporaries_and_uncommitted_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    training.train(
        "jsb_rnn_plain",
        run_dir,
        data="synthetic",
        epochs=1,
        overrides=TINY,
        verbose=0,
        log=lambda m: None,
    )
    stale = [
        run_dir / "checkpoints" / ".epoch-0002.keras.tmp-abc.keras",
        run_dir / ".state.json.tmp-xyz",
        run_dir / "checkpoints" / "epoch-0002.keras",
    ]
    for path in stale:
        path.write_bytes(b"half a file")
    training.train("jsb_rnn_plain", run_dir, resume=True, epochs=1, verbose=0, log=lambda m: None)
    assert not any(p.exists() for p in stale)


def test_tensorboard_asked_for_without_the_package_fails_before_the_run(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "tensorboard.summary", None)
    with pytest.raises(ImportError, match=r"pip install 'keras-rnnreg\[tensorboard\]'"):
        training.train("jsb_rnn_plain", tmp_path / "run", data="synthetic", tensorboard=True)
    assert not (tmp_path / "run").exists()
    training.train(  # the default writes no logs then, and says nothing
        "jsb_rnn_plain", tmp_path / "run", data="synthetic", epochs=1, overrides=TINY, verbose=0,
        log=lambda m: None,
    )
    assert not (tmp_path / "run" / "tensorboard").exists()
