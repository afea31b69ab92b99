"""The rnnreg command line: list, show, train, evaluate, reproduce; errors on bad input."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from keras_rnnreg import cli, zoo

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "model.units=4", "--set", "data.limit=4", "--set", "data.batch_size=4"]


def run(argv):
    out = io.StringIO()
    code = cli.main(argv, out=out)
    return code, out.getvalue()


def test_list(capsys):
    code, text = run(["list"])
    assert code == 0 and text.split() == zoo.list_models()
    code, text = run(["list", "jsb_*", "--long"])
    assert code == 0 and len(text.splitlines()) == 10 and "8.58" in text
    code, text = run(["list", "--keys"])
    assert "optimizer.learning_rate" in text
    assert run(["list", "nothing*"])[0] == 1


def test_show_applies_overrides():
    code, text = run(["show", "timit_blstm_ns", "--set", "model.units=7"])
    config = json.loads(text)
    assert code == 0 and config["model"]["units"] == 7 and config["paper"]["value"] == 19.0


def test_unknown_name_lists_close_matches(capsys):
    assert run(["train", "jsb_rnn_plian"])[0] == 2
    err = capsys.readouterr().err
    assert "unknown zoo name 'jsb_rnn_plian'" in err and "jsb_rnn_plain" in err


def test_bad_overrides_are_clear_errors(capsys, tmp_path):
    assert (
        run(["train", "jsb_rnn_plain", "--out", str(tmp_path / "a"), "--set", "model.unitz=3"])[0]
        == 2
    )
    assert "unknown configuration key 'model.unitz'" in capsys.readouterr().err
    assert (
        run(
            [
                "train",
                "jsb_rnn_plain",
                "--out",
                str(tmp_path / "b"),
                "--set",
                "optimizer.learning_rate=fast",
            ]
        )[0]
        == 2
    )
    err = capsys.readouterr().err
    assert "optimizer.learning_rate='fast': RMSprop refused it" in err and "learning_rate" in err
    assert run(["train", "jsb_rnn_plain", "--set", "units"])[0] == 2
    assert "key=value" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_train_evaluate_and_resume(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, text = run(
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
        ]
    )
    assert code == 0 and "jsb_rnn_plain: test NLL per timestep" in text and "not comparable" in text
    for name in (
        "config.json",
        "state.json",
        "history.csv",
        "report.json",
        "checkpoints/best.keras",
        "checkpoints/last.keras",
    ):
        assert (run_dir / name).exists(), name
    code, text = run(["evaluate", str(run_dir)])
    result = json.loads(text)
    assert code == 0 and result["metric"] == "nll" and result["paper"] == 8.58
    # An existing run is not overwritten without --resume; --resume with more epochs continues.
    assert run(["train", "jsb_rnn_plain", "--out", str(run_dir), "--quiet"])[0] == 2
    assert "--resume" in capsys.readouterr().err
    code, text = run(
        ["train", "jsb_rnn_plain", "--out", str(run_dir), "--resume", "--epochs", "3", "--quiet"]
    )
    assert code == 0 and "after epoch 2" in text
    assert json.loads((run_dir / "report.json").read_text())["epochs_run"] == 3


def test_evaluate_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert run(["evaluate", str(tmp_path)])[0] == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and "missing config.json" in err


def test_reproduce_quick(tmp_path):
    code, text = run(
        ["reproduce", str(ROOT / "zoo" / "normstab_adding.toml"), "--quick", "--out", str(tmp_path)]
    )
    assert code == 0 and "table:" in text
    table = (tmp_path / "normstab_adding.md").read_text()
    assert "IRNN + norm-stabilizer" in table and "0.059" in table and "beats_short_sighted" in table


def test_console_script_help():
    result = subprocess.run(
        [sys.executable, "-m", "keras_rnnreg.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0
    for command in ("list", "train", "evaluate", "reproduce", "tune"):
        assert command in result.stdout


def test_missing_card(capsys):
    assert run(["reproduce", "zoo/nothing.toml"])[0] == 2
    assert "card 'zoo/nothing.toml' not found" in capsys.readouterr().err


@pytest.mark.slow
def test_readme_main_job(tmp_path):
    """`rnnreg train jsb_rnn_plain` on the embedded chorales (minutes; RNNREG_SLOW=1)."""
    code, text = run(["train", "jsb_rnn_plain", "--out", str(tmp_path / "run"), "--lines"])
    assert code == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["ours"] < 10.0


def test_reproduce_jobs_ctrl_c_stops_the_runs_and_the_same_command_resumes(tmp_path):
    """`reproduce --jobs 2`: two child processes; SIGINT stops them; the same command resumes."""
    import os
    import signal
    import time

    out = tmp_path / "out"
    card = (
        tmp_path / "normstab_adding.toml"
    )  # the quick variant without early stopping: runs that last
    card.write_text(
        (ROOT / "zoo" / "normstab_adding.toml")
        .read_text()
        .replace('"data.limit=8"]', '"data.limit=8", "training.patience=100000"]')
    )
    assert "training.patience" in card.read_text()
    argv = ["reproduce", str(card), "--quick", "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "keras_rnnreg.cli", *argv, "--epochs", "1000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    states = [out / key / "seed0" / "state.json" for key in ("adding_irnn", "adding_irnn_ns")]
    try:
        deadline = time.time() + 180
        while not all(s.exists() for s in states):
            assert proc.poll() is None and time.time() < deadline, (
                proc.stdout.read() if proc.poll() else "timeout"
            )
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # the parent stops its children on SIGINT; they stop when orphaned
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, text
    assert "Run the same command again" in text
    epochs = [json.loads(s.read_text())["epoch"] for s in states]
    time.sleep(1.0)
    assert [json.loads(s.read_text())["epoch"] for s in states] == epochs, (
        text
    )  # the children are gone
    assert not any((s.parent / "report.json").exists() for s in states), text
    # The same command (here with fewer epochs, so that it ends at once) resumes both runs.
    code, text = run([*argv, "--epochs", "2"])
    assert code == 0 and text.count("resuming") == 2, text
    assert all((s.parent / "report.json").exists() for s in states)
    assert "adding_irnn_ns" in (out / "normstab_adding.md").read_text()


def test_one_train_checks_its_configuration_once(tmp_path, monkeypatch):
    """One ``rnnreg train`` (with --set and --epochs, training, the best checkpoint reloaded for
    the test numbers) validates its configuration once: zoo.resolve's Config is passed on."""
    from keras_rnnreg.zoo import schema

    zoo.list_models()  # the presets are checked when they are registered, not by the run
    checks = []
    real = schema._check_conflicts
    monkeypatch.setattr(schema, "_check_conflicts", lambda c: checks.append(c) or real(c))
    schema._CHECKED.clear()
    code, _ = run(["train", "jsb_rnn_plain", "--data", "synthetic", "--epochs", "1", "--out",
                   str(tmp_path / "run"), "--quiet", *TINY])
    assert code == 0 and len(checks) == 1
    config = zoo.resolve("jsb_rnn_plain", ["model.units=4"])
    assert zoo.resolve(config) is config  # a resolved config is not checked again
    with pytest.raises(TypeError, match="read-only"):
        config["model"]["units"] = 5
