"""Experiment cards (zoo/*.toml): in step with the registry; quick variants run; tables written."""

import json
import re
from pathlib import Path

import pytest

from keras_rnnreg import zoo
from keras_rnnreg.experiments import cards

ROOT = Path(__file__).resolve().parents[2]
CARDS = sorted((ROOT / "zoo").glob("*.toml"))


def test_there_is_a_card_per_paper_table():
    stems = {p.stem for p in CARDS}
    assert {
        "noise_table1",
        "normstab_table1",
        "normstab_table2",
        "normstab_table3",
        "normstab_table4",
        "normstab_table5",
        "normstab_adding",
        "beyond_table1",
        "zoneout_char_ptb",
    } <= stems


def test_cards_and_registry_are_in_step():
    """Every card entry is a registered name, and every registered name is in some card."""
    in_cards = set()
    for path in CARDS:
        card = cards.load_card(path)  # raises on unknown names, keys, overrides
        in_cards |= set(cards.card_names(card))
        for entry in card["entries"]:  # the paper's numbers come from the presets
            paper = zoo.get_config(entry["name"])["paper"]
            if entry["paper"] is None and paper["value"] is not None:  # `paper = false`
                assert "set" in entry, (path.name, entry["key"])  # a cell no paper has
                continue
            assert entry["paper"] in [paper["value"], *(paper["other"] or {}).values()]
            if "set" not in entry:
                assert entry["paper"] == paper["value"], (path.name, entry["key"])
        for run in cards.plan(card):  # what each run's log line quotes: its own cell's number
            entry = next(e for e in card["entries"] if e["key"] == run["key"])
            assert run["paper"] == entry["paper"]
    assert in_cards == set(zoo.list_models())


@pytest.mark.parametrize("path", CARDS, ids=[p.stem for p in CARDS])
def test_quick_variant_runs(path, tmp_path):
    out = tmp_path / path.stem
    table = cards.reproduce(path, quick=True, out_dir=out, log=lambda m: None)
    text = table.read_text()
    assert "Quick variant" in text and "ours / paper" in text
    results = json.loads((out / "results.json").read_text())
    card = cards.load_card(path)
    assert {e["key"] for e in results["entries"]} == set(
        card["quick"].get("only") or [e["key"] for e in card["entries"]]
    )
    assert not results["failures"]
    # A second call reuses the finished runs.
    messages = []
    cards.reproduce(path, quick=True, out_dir=out, log=messages.append)
    assert all("done before" in m for m in messages)


def _write(tmp_path, text):
    path = tmp_path / "card.toml"
    path.write_text(text)
    return path


QUICK = '\n[quick]\ndata = "synthetic"\nepochs = 1\n'


def test_bad_cards_name_the_problem(tmp_path):
    with pytest.raises(zoo.UnknownModelError, match="jsb_rnn_plain"):
        cards.load_card(_write(tmp_path, '[[entry]]\nname = "jsb_rnn_plane"\n' + QUICK))
    with pytest.raises(cards.CardError, match="unknown key"):
        cards.load_card(
            _write(tmp_path, '[[entry]]\nname = "jsb_rnn_plain"\npapper = "x"\n' + QUICK)
        )
    with pytest.raises(cards.CardError, match="duplicate key"):
        cards.load_card(
            _write(
                tmp_path,
                '[[entry]]\nname = "jsb_rnn_plain"\n[[entry]]\nname = "jsb_rnn_plain"\n' + QUICK,
            )
        )
    with pytest.raises(cards.CardError, match=r"missing the \[quick\]"):
        cards.load_card(_write(tmp_path, '[[entry]]\nname = "jsb_rnn_plain"\n'))
    with pytest.raises(zoo.ConfigError, match="model.units='x'"):
        cards.load_card(
            _write(tmp_path, '[[entry]]\nname = "jsb_rnn_plain"\nset = ["model.units=x"]\n' + QUICK)
        )
    with pytest.raises(cards.CardError, match=r"paper = 'beta=5' is not a key of the paper.other"):
        cards.load_card(
            _write(
                tmp_path, '[[entry]]\nname = "ptb_srnn_trec_ns_target"\npaper = "beta=5"\n' + QUICK
            )
        )
    with pytest.raises(cards.CardError, match=r"paper = 1.0: expected a key of the preset"):
        cards.load_card(
            _write(tmp_path, '[[entry]]\nname = "jsb_rnn_plain"\npaper = 1.0\n' + QUICK)
        )
    with pytest.raises(cards.CardError, match=r"paper = True: expected a key of the preset"):
        cards.load_card(
            _write(tmp_path, '[[entry]]\nname = "jsb_rnn_plain"\npaper = true\n' + QUICK)
        )
    with pytest.raises(FileNotFoundError, match="nowhere.toml"):
        cards.load_card(tmp_path / "nowhere.toml")


PARALLEL_CARD = """
title = "two entries, one broken"
seeds = [0, 1]
rows = ["r"]
columns = ["ok", "broken"]

[[entry]]
name = "jsb_rnn_plain"
row = "r"
column = "ok"
data = "synthetic"
epochs = 1
set = ["model.units=3", "data.limit=4", "data.batch_size=4"]

[[entry]]
name = "jsb_rnn_plain"
key = "broken"
row = "r"
column = "broken"
data = "no/such/file.mat"
epochs = 1
seeds = [0]

[quick]
data = "synthetic"
"""


def test_parallel_runs_survive_a_crashed_run_and_report_every_seed(tmp_path):
    """--jobs 2: child processes; the crashed entry is a failure in the table, the others finish."""
    card = _write(tmp_path, PARALLEL_CARD)
    out = tmp_path / "out"
    messages = []
    table = cards.reproduce(card, out_dir=out, jobs=2, log=messages.append)
    results = json.loads((out / "results.json").read_text())
    assert [(e["key"], e["seeds"]) for e in results["entries"]] == [("jsb_rnn_plain", [0, 1])]
    assert [(f["key"], f["seed"]) for f in results["failures"]] == [("broken", 0)]
    error = results["failures"][0]["error"]
    assert "no/such/file.mat" in error and re.search(r"error: \w+Error: ", error)  # its last word
    assert "I0000" not in error and "WARNING" not in error  # not a backend's start-up banner
    for seed in (0, 1):
        run_dir = out / "jsb_rnn_plain" / f"seed{seed}"
        assert "wall_s" in json.loads((run_dir / "report.json").read_text())
        assert "[rnnreg-progress]" in (run_dir / "train.log").read_text()
    text = table.read_text()
    values = results["entries"][0]["values"]
    assert f"s0 {cards._fmt(values[0])}, s1 {cards._fmt(values[1])}" in text  # every seed
    assert " ± " in text and "failed (seed 0)" in text
    assert any("done" in m and "nll" in m for m in messages) and any(
        "failed" in m for m in messages
    )
    # Again: the finished runs are skipped, only the broken ones are tried (and fail) again.
    messages.clear()
    cards.reproduce(card, out_dir=out, jobs=2, log=messages.append)
    assert sum("done before" in m for m in messages) == 2
    assert sum("failed" in m for m in messages) == 1


def test_parallel_display_rewrites_lines_on_a_terminal(tmp_path, monkeypatch):
    import io

    from keras_rnnreg import _processes
    from keras_rnnreg.experiments import _parallel

    job = _parallel.Job({"key": "a", "seed": 0}, tmp_path)
    job.state, job.epoch, job.total, job.logs = "training", 3, 10, {"loss": 1.0, "val_loss": 0.5}
    stream = io.StringIO()
    display = _parallel.Display([job], stream, log=None, tty=True)
    display.draw()
    display.draw()
    text = stream.getvalue()
    assert text.count("\x1b[F") == 1 and "epoch 3/10" in text and "val_loss 0.5" in text
    # More runs than terminal lines: the running ones and a count of the others.
    many = [_parallel.Job({"key": f"k{i}", "seed": 0}, tmp_path) for i in range(3)] + [job]
    compact = _parallel.Display(many, io.StringIO(), log=None, tty=True)
    compact.stream.fileno = lambda: 0
    monkeypatch.setattr(
        _parallel.os, "get_terminal_size", lambda fd: _parallel.os.terminal_size((80, 4))
    )
    compact.draw()
    assert compact.stream.getvalue().splitlines()[-1].endswith("1 training, 3 waiting")
    assert _processes.child_env("1", base={})["CUDA_VISIBLE_DEVICES"] == "1"
    assert _processes.child_env(None, base={})["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"


SEQUENTIAL_CARD = PARALLEL_CARD.replace("seeds = [0, 1]", "seeds = [0]")


def test_failed_runs_make_reproduce_exit_1_and_a_rerun_retries_them(tmp_path, capsys):
    from keras_rnnreg import cli

    card, out = _write(tmp_path, SEQUENTIAL_CARD), tmp_path / "out"
    code = cli.main(["reproduce", str(card), "--out", str(out), "--jobs", "2"])
    text = capsys.readouterr().out
    assert code == 1 and "1 run(s) failed (broken seed 0)" in text
    assert (out / "jsb_rnn_plain" / "seed0" / "report.json").is_file()  # the good run is kept
    # the rerun retries the failed run only (it fails again: its data file does not exist)
    assert cli.main(["reproduce", str(card), "--out", str(out), "--jobs", "2"]) == 1
    assert "1 run(s) failed (broken seed 0)" in capsys.readouterr().out


def test_a_busy_card_folder_is_refused_up_front(tmp_path, capsys):
    from keras_rnnreg import _runfolder, cli

    card, out = _write(tmp_path, SEQUENTIAL_CARD), tmp_path / "out"
    out.mkdir()
    holder = _runfolder.RunLock(out).acquire()  # flock: another open file, as another process
    try:
        assert cli.main(["reproduce", str(card), "--out", str(out)]) == 2
    finally:
        holder.release()
    err = capsys.readouterr().err
    assert f"{out} is in use by another run (pid" in err and len(err.strip().splitlines()) == 1
    assert not (out / "jsb_rnn_plain").exists() and not (out / "results.json").exists()


def test_devices_are_checked_against_the_visible_gpus_and_deduplicated(tmp_path, monkeypatch):
    from keras_rnnreg import _processes

    monkeypatch.setattr(_processes, "visible_gpus", lambda: ["0", "1"])
    assert cards._check_devices(["0", "0", "1", "0"]) == ["0", "1"]
    with pytest.raises(cards.CardError, match=r"--devices 7: 7 not visible \(this machine shows "
                                              r"GPUs 0, 1\)"):
        cards.reproduce(_write(tmp_path, SEQUENTIAL_CARD), out_dir=tmp_path / "o", devices=["7"])
    monkeypatch.setattr(_processes, "visible_gpus", lambda: [])
    with pytest.raises(cards.CardError, match="shows no GPU"):
        cards._check_devices(["0"])
    assert not (tmp_path / "o").exists()  # checked before anything is made
    monkeypatch.undo()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # a child is given one of this process's
    assert _processes.visible_gpus() == ["2", "3"]


def test_the_quick_header_says_how_many_epochs():
    card = {"stem": "c", "entries": []}
    entry = {"key": "a", "name": "n", "row": None, "column": None, "ours": 1.0, "std": None,
             "paper": 2.0, "relative_difference": 0.5, "comparable": False, "seeds": [0],
             "values": [1.0], "epochs_run": [3], "best_epoch": [3], "metric": "m"}
    text = cards.markdown(card, {"entries": [entry], "failures": []}, quick=True)
    assert "3 epochs at most" in text and "one epoch" not in text


def test_an_entry_no_paper_has_shows_no_paper_number(tmp_path):
    """``paper = false``: a combination no paper reports; the cell and the details show "–"."""
    card = _write(tmp_path, '[[entry]]\nname = "jsb_rnn_plain"\nkey = "zo"\nrow = "r"\n'
                  'column = "c"\npaper = false\nset = ["regularization.zoneout.hidden=0.1"]\n'
                  + QUICK)
    loaded = cards.load_card(card)
    assert loaded["entries"][0]["paper"] is None
    assert cards.plan(loaded)[0]["paper"] is None
    results = {"entries": [{"key": "zo", "name": "jsb_rnn_plain", "row": "r", "column": "c",
                            "ours": 9.1, "std": None, "seeds": [0], "values": [9.1],
                            "paper": None, "relative_difference": None, "comparable": True,
                            "epochs_run": [3], "best_epoch": [2]}]}
    text = cards.markdown({**loaded, "rows": ["r"], "columns": ["c"]}, results)
    assert "| r | 9.10 / – |" in text
    assert "| zo | `jsb_rnn_plain` | 9.10 | – | – |" in text
