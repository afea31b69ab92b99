"""Experiment cards (zoo/*.toml): in step with the registry, quick variants run, tables are written."""

import json
from pathlib import Path

import pytest

from keras_rnnreg import zoo
from keras_rnnreg.zoo import cards

ROOT = Path(__file__).resolve().parents[2]
CARDS = sorted((ROOT / "zoo").glob("*.toml"))


def test_there_is_a_card_per_paper_table():
    stems = {p.stem for p in CARDS}
    assert {"noise_table1", "normstab_table1", "normstab_table2", "normstab_table3", "normstab_table4",
            "normstab_table5", "normstab_adding"} <= stems


def test_cards_and_registry_are_in_step():
    """Every card entry is a registered name, and every registered name is in some card."""
    in_cards = set()
    for path in CARDS:
        card = cards.load_card(path)  # raises on unknown names, keys, overrides
        in_cards |= set(cards.card_names(card))
        for entry in card["entries"]:
            assert entry.get("paper") is not None, (path.name, entry["key"])
            if "set" not in entry:
                assert entry["paper"] == zoo.get_config(entry["name"])["paper"]["value"], (path.name, entry["key"])
    assert in_cards == set(zoo.list_models())


@pytest.mark.parametrize("path", CARDS, ids=[p.stem for p in CARDS])
def test_quick_variant_runs(path, tmp_path):
    out = tmp_path / path.stem
    table = cards.reproduce(path, quick=True, out_dir=out, log=lambda m: None)
    text = table.read_text()
    assert "Quick variant" in text and "ours / paper" in text
    results = json.loads((out / "results.json").read_text())
    card = cards.load_card(path)
    assert {e["key"] for e in results["entries"]} == set(card["quick"].get("only") or
                                                         [e["key"] for e in card["entries"]])
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
        cards.load_card(_write(tmp_path, '[[entry]]\nname = "jsb_rnn_plane"\npaper = 1.0\n' + QUICK))
    with pytest.raises(cards.CardError, match="unknown key"):
        cards.load_card(_write(tmp_path, '[[entry]]\nname = "jsb_rnn_plain"\npapper = 1.0\n' + QUICK))
    with pytest.raises(cards.CardError, match="duplicate key"):
        cards.load_card(_write(tmp_path, '[[entry]]\nname = "jsb_rnn_plain"\n[[entry]]\nname = "jsb_rnn_plain"\n'
                               + QUICK))
    with pytest.raises(cards.CardError, match=r"missing the \[quick\]"):
        cards.load_card(_write(tmp_path, '[[entry]]\nname = "jsb_rnn_plain"\n'))
    with pytest.raises(zoo.ConfigError, match="model.units='x'"):
        cards.load_card(_write(tmp_path, '[[entry]]\nname = "jsb_rnn_plain"\nset = ["model.units=x"]\n' + QUICK))
    with pytest.raises(FileNotFoundError, match="nowhere.toml"):
        cards.load_card(tmp_path / "nowhere.toml")
