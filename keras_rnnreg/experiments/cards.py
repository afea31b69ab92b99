"""Experiment cards: one TOML file per paper table (top-level ``zoo/``), run by ``rnnreg
reproduce``.

A card names zoo configurations and the paper's numbers; it holds no hyperparameters of its own
beyond per-entry overrides (e.g. Table 2's learning-rate / clipping columns)::

    title = "Noise study, Table 1: test NLL per timestep (nats)"
    paper = "Regularizing Recurrent Networks"
    table = "Table 1"
    command = "rnnreg reproduce noise_table1"
    data_root = "~/corpora"             # optional: relative entry data paths are looked up here
                                        # (default: --data-root, $RNNREG_DATA, the data folder)
    seeds = [0]
    rows = ["RNN-plain", "RNN-FD"]      # optional grid layout of the markdown table
    columns = ["JSB", "Nottingham"]

    [[entry]]
    name = "jsb_rnn_plain"              # a zoo name (a test keeps cards and registry in step)
    key = "jsb_rnn_plain"               # unique in the card; default: name
    row = "RNN-plain"
    column = "JSB"
    paper = "lr=0.1, clipping=1e+06"   # optional: a key of the preset's paper.other, for an
                                        # entry with overrides (default: the preset's paper.value);
                                        # false: no paper has this cell (shown as "–")
    data = "polyphonic/JSB_Chorales.mat"   # optional: default the configuration's data.source
    epochs = 300                        # optional
    set = ["training.patience=40"]      # optional overrides
    seeds = [0, 1]                      # optional: default the card's

    [quick]                             # the quick variant (CI): seconds, synthetic data
    data = "synthetic"
    epochs = 1
    set = ["model.units=4", "data.limit=4"]
    only = ["jsb_rnn_plain"]            # entry keys (default: all)
"""

import fnmatch
import math
import statistics
from pathlib import Path

from keras_rnnreg import _processes, _runfolder, training
from keras_rnnreg.experiments import _parallel
from keras_rnnreg.experiments._runs import run_folder, train_run
from keras_rnnreg.zoo import _registry, schema
from keras_rnnreg.zoo.schema import Field, Section

__all__ = ["CARD", "ENTRY", "QUICK", "CardError", "card_names", "load_card", "markdown", "plan",
           "reproduce", "summarize"]


class CardError(schema.ConfigError):
    """A malformed card: the message names the file, the entry and the key."""


_TEXT, _TEXTS = Field(str), Field(list, item=str)
_SEEDS = Field(list, item=int, minimum=0, distinct=True,
               what="a non-empty list of distinct integers >= 0, e.g. [0, 1, 2]")
_SHARED = {"data": Field(str, doc="a data path or source name"), "epochs": Field(int, minimum=1),
           "set": Field(list, item=str, doc='"key=value" overrides'), "seeds": _SEEDS}
#: The tables of a card (module docstring): the card, each [[entry]] and [quick].
CARD = Section("an experiment card", {
    **{k: _TEXT for k in ("title", "table", "metric", "command", "notes")},
    "paper": Field(str, doc="the paper's title"), "data_root": Field(str, doc="a folder path"),
    "lower_is_better": Field(bool), "seeds": _SEEDS, "epochs": _SHARED["epochs"],
    "rows": _TEXTS, "columns": _TEXTS, "count": Field(list, item=str, doc="test report keys"),
    "entry": Field(list, item=dict, what="[[entry]] tables"), "quick": Field(dict)})
ENTRY = Section("an entry of a card", {
    **_SHARED, **{k: _TEXT for k in ("key", "row", "column", "note")},
    "name": Field(str, doc="a zoo name"),
    "paper": Field(str, also=(False,), what="a key of the preset's paper.other (the paper's number "
                   "lives there), or false (no paper has this cell)")})
QUICK = Section("the quick variant of a card", {
    **_SHARED, "only": Field(list, item=str, doc="entry keys")})


def load_card(path):
    """Parse and check a card; returns a dict with ``entries`` (each with a unique ``key``)."""
    path, card = schema.load_toml(path, CardError, "card")
    schema.check_table(card, CARD, str(path), CardError)
    entries = card.get("entry")
    if not entries:
        raise CardError(f"{path}: no [[entry]] tables")
    seen = set()
    for i, entry in enumerate(entries):
        where = f"{path}: entry {i + 1}" + (f" ({entry['name']!r})" if "name" in entry else "")
        schema.check_table(entry, ENTRY, where, CardError)
        if "name" not in entry:
            raise CardError(f"{where}: missing 'name' (a zoo name)")
        _registry._lookup(entry["name"])  # UnknownModelError with close matches
        entry.setdefault("key", entry["name"])
        if entry["key"] in seen:
            raise CardError(f"{where}: duplicate key {entry['key']!r}; give entries that share a "
                            "name a 'key'")
        seen.add(entry["key"])
        if "set" in entry:
            _registry.resolve(entry["name"], entry["set"])  # checks the overrides
        entry["paper"] = _paper_number(entry, where)
    quick = card.get("quick")
    if quick is None:
        raise CardError(f"{path}: missing the [quick] variant")
    schema.check_table(quick, QUICK, f"{path}: [quick]", CardError)
    for key in quick.get("only", []):
        if key not in seen:
            raise CardError(f"{path}: [quick] only: {key!r} is not an entry key of the card")
    card.update(entries=entries, path=str(path), stem=path.stem)
    return card


def _paper_number(entry, where):
    """The paper's number of an entry, from its preset: ``paper.value``, or the ``paper.other``
    value that the entry's ``paper`` names (a cell the preset reaches through overrides); None
    for ``paper = false``, a combination no paper reports."""
    paper = _registry.get_config(entry["name"])["paper"]
    if entry.get("paper") is False:
        return None
    if "paper" not in entry:
        return paper["value"]
    other = paper["other"] or {}
    if entry["paper"] not in other:
        raise CardError(f"{where}: paper = {entry['paper']!r} is not a key of the paper.other of "
                        f"{entry['name']!r}; expected one of {sorted(other)}")
    return other[entry["paper"]]


def plan(card, quick=False, only=None, epochs=None, seeds=None, data_root=None):
    """The runs of a card: a list of dicts (key, name, seed, data, overrides, epochs)."""
    q = card["quick"] if quick else {}
    runs = []
    for entry in card["entries"]:
        if quick and q.get("only") and entry["key"] not in q["only"]:
            continue
        if only and not any(fnmatch.fnmatchcase(entry[k], only) for k in ("key", "name")):
            continue
        entry_seeds = _first(seeds, q.get("seeds"), entry.get("seeds"), card.get("seeds"), [0])
        overrides = list(entry.get("set", [])) + list(q.get("set", []))
        for seed in entry_seeds:
            runs.append({  # paper: the cell's number (an override entry's own)
                "key": entry["key"], "name": entry["name"], "paper": entry.get("paper"),
                "seed": int(seed), "data": q.get("data", entry.get("data")),
                "epochs": _first(epochs, q.get("epochs"), entry.get("epochs"), card.get("epochs")),
                "overrides": overrides, "data_root": data_root or card.get("data_root")})
    return runs


def _first(*values):
    """The first value that is not None (0 and [] are values, not 'unset')."""
    return next((v for v in values if v is not None), None)


def reproduce(card_path, quick=False, out_dir=None, data_root=None, only=None, epochs=None,
              seeds=None, verbose=0, log=print, table_only=False, jobs=1, devices=None,
              stream=None):
    """Run a card; returns the path of the markdown table, ``OUT/<card>.md``.

    Every entry x seed trains into ``OUT/<key>/seed<S>`` (a run with a ``report.json`` is not run
    again; an interrupted one resumes). The table holds every finished run of the card in ``OUT``
    (also those of earlier calls with another ``only``), our numbers beside the paper's, with
    several seeds as mean ± std and every seed's number; ``OUT/results.json`` lists them and the
    runs that failed. ``table_only=True`` trains nothing and only rewrites the table. ``jobs > 1``
    or ``devices`` (GPU ids, checked against the visible GPUs) run the entries x seeds in child
    processes, up to ``jobs`` at a time (:mod:`keras_rnnreg.experiments._parallel`; ``stream``
    gets the live progress lines). A second command on a busy ``OUT`` is refused up front.
    """
    card = load_card(card_path)
    for key, value in (("epochs", epochs), ("seeds", None if seeds is None else list(seeds))):
        if value is not None:
            schema.check_value((key,), QUICK.fields[key], value, error=CardError)
    devices = _check_devices(devices)
    out = Path(out_dir or f"runs/{card['stem']}" + ("-quick" if quick else ""))
    if out.exists() and not out.is_dir():
        raise CardError(f"--out {out} is a file; expected a folder for the card's runs and table")
    out.mkdir(parents=True, exist_ok=True)
    lock = _runfolder.RunLock(out)
    try:
        lock.acquire()
    except _runfolder.RunLockedError as err:
        raise CardError(str(err)) from None
    try:
        runs = [] if table_only else plan(card, quick=quick, only=only, epochs=epochs,
                                          seeds=seeds, data_root=data_root)
        if not runs and not table_only:
            raise CardError(f"{card_path}: no entry matches --only {only!r}")
        if runs and (jobs > 1 or devices):
            reports, failures = _parallel.run(runs, out, jobs=jobs, devices=devices,
                                              verbose=verbose, log=log, stream=stream)
        else:
            reports, failures = _run_in_turn(runs, out, verbose, log)
        return _write_table(card, card_path, out, reports, failures, quick, epochs, seeds,
                            data_root)
    finally:
        lock.release()


def _check_devices(devices):
    """``devices`` without repeats, each one a GPU this machine shows; a one-line error if not."""
    if not devices:
        return devices
    devices = list(dict.fromkeys(str(d) for d in devices))
    visible = _processes.visible_gpus()
    missing = [d for d in devices if d not in visible]
    if missing:
        shown = f"GPUs {', '.join(visible)}" if visible else "no GPU"
        raise CardError(f"--devices {','.join(devices)}: {', '.join(missing)} not visible (this "
                        f"machine shows {shown}); leave --devices out to use the default device")
    return devices


def _run_in_turn(runs, out, verbose, log):
    """Train ``runs`` one after the other in this process; ``(reports, failures)``."""
    reports, failures = [], []
    for i, run in enumerate(runs):
        run_dir = run_folder(out, run)
        head = f"[{i + 1}/{len(runs)}] {run['key']} seed {run['seed']}"
        report = _runfolder.finished_report(run_dir)
        if report is not None:
            log(f"{head}: done before ({report['ours']:.4g})")
        else:
            resume = (run_dir / training.CONFIG).exists()
            log(f"{head}: " + ("resuming" if resume else "training")
                + (f" (epochs {run['epochs']})" if run["epochs"] else ""))
            try:
                report = train_run(run, run_dir, resume, verbose,
                                   log if verbose else lambda msg: None)
            except (KeyboardInterrupt, schema.ConfigError, FileNotFoundError):
                raise
            except Exception as err:  # one failed run (e.g. NaNs beyond the restarts) goes on
                error = f"{type(err).__name__}: {err}"
                log(f"    FAILED: {error}")
                failures.append({"key": run["key"], "seed": run["seed"], "error": error})
                continue
            log(f"    {report['metric']} = {report['ours']:.4g} (paper {run.get('paper')}) in "
                f"{report['wall_s']} s, best epoch {report['best_epoch']} of "
                f"{report['epochs_run']}")
        reports.append((run, report))
    return reports, failures


def _write_table(card, card_path, out, reports, failures, quick, epochs, seeds, data_root):
    """``OUT/results.json`` and ``OUT/<card>.md`` from these and the card's earlier runs."""
    done = {(run["key"], run["seed"]) for run, _ in reports}
    for run in plan(card, quick=quick, seeds=seeds, data_root=data_root):  # the card's earlier runs
        report = _runfolder.finished_report(run_folder(out, run))
        if (run["key"], run["seed"]) not in done and report is not None:
            reports.append((run, report))
    order = {e["key"]: i for i, e in enumerate(card["entries"])}
    reports.sort(key=lambda item: (order[item[0]["key"]], item[0]["seed"]))
    results = summarize(card, reports)
    results["failures"] = failures
    training.write_json_atomic(out / "results.json", results)
    table = out / f"{card['stem']}.md"
    command = (f"rnnreg reproduce {card_path}" + (" --quick" if quick else "")
               + (f" --epochs {epochs}" if epochs else "")
               + (f" --seeds {','.join(map(str, seeds))}" if seeds else ""))
    _runfolder.atomic_write(table, markdown(card, results, quick=quick, command=command))
    return table


def summarize(card, reports):
    """Per-entry mean / std over seeds, the paper's number, the difference."""
    by_key = {}
    for run, report in reports:
        by_key.setdefault(run["key"], []).append(report)
    entries = {e["key"]: e for e in card["entries"]}
    rows = []
    for key, items in by_key.items():
        entry = entries[key]
        values = [r["ours"] for r in items]
        mean = statistics.fmean(values)
        paper = entry.get("paper", items[0].get("paper"))
        row = {"key": key, "name": entry["name"], "row": entry.get("row"),
               "column": entry.get("column"), "metric": items[0]["metric"], "ours": mean,
               "std": statistics.stdev(values) if len(values) > 1 else None,
               "seeds": [r["seed"] for r in items], "values": values, "paper": paper,
               **training.compare_with_paper(mean, paper),
               "comparable": all(r.get("comparable", True) for r in items),
               "epochs_run": [r["epochs_run"] for r in items],
               "best_epoch": [r["best_epoch"] for r in items], "data": items[0].get("data")}
        for flag in card.get("count", []):
            row[flag] = f"{sum(bool(r['test'].get(flag)) for r in items)}/{len(items)}"
        rows.append(row)
    return {"card": card["path"], "title": card.get("title", ""), "table": card.get("table", ""),
            "entries": rows}


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.2f}"


def _ours(entry):
    """``8.81 ± 0.02*``: the mean over seeds, their spread, ``*`` when not the paper's data."""
    spread = f" ± {_fmt(entry['std'])}" if entry["std"] is not None else ""
    return f"{_fmt(entry['ours'])}{spread}{'' if entry['comparable'] else '*'}"


def markdown(card, results, quick=False, command=""):
    """Our numbers beside the paper's: a grid (rows x columns) when the card has one, details."""
    lines = [f"# {card.get('title', card['stem'])}", ""]
    if quick:
        epochs = max((n for e in results["entries"] for n in e["epochs_run"]), default=1)
        lines += [f"**Quick variant**: synthetic data, tiny networks, {epochs} epoch"
                  f"{'s' if epochs != 1 else ''} at most — a smoke test of the pipeline; the "
                  "numbers mean nothing.", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    entries = results["entries"]
    by_cell = {(e["row"], e["column"]): e for e in entries if e["row"] and e["column"]}
    if card.get("rows") and card.get("columns") and by_cell:
        cols = card["columns"]
        lines += ["ours / paper:", "", f"| | {' | '.join(cols)} |", "|---|" + "---|" * len(cols)]
        for row in card["rows"]:
            cells = []
            for column in cols:
                e = by_cell.get((row, column))
                if e is None:
                    paper = next((x.get("paper") for x in card["entries"]
                                  if x.get("row") == row and x.get("column") == column), None)
                    cells.append(f"– / {_fmt(paper)}" if paper is not None else "")
                else:
                    cells.append(f"{_ours(e)} / {_fmt(e['paper'])}")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    count = card.get("count", [])
    header = ["entry", "zoo name", "ours", "paper", "diff", "seeds", "every seed", "epochs (best)",
              *count]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in entries:
        diff = e["relative_difference"]
        diff = f"{diff:+.1%}" if diff is not None and e["comparable"] else "–"
        epochs = ", ".join(f"{a} ({b})" for a, b in zip(e["epochs_run"], e["best_epoch"]))
        # every seed's number, "s0 8.81, s1 8.85": mean ± std alone hides a seed that failed
        seeds = ", ".join(f"s{seed} {_fmt(value)}" for seed, value in zip(e["seeds"], e["values"]))
        cells = [e["key"], f"`{e['name']}`", _ours(e), _fmt(e["paper"]), diff, str(len(e["seeds"])),
                 seeds, epochs, *(str(e.get(flag, "")) for flag in count)]
        lines.append("| " + " | ".join(cells) + " |")
    for failure in results.get("failures", []):
        cells = [failure["key"], "–", f"failed (seed {failure['seed']})"] + [""] * (len(header) - 3)
        lines.append("| " + " | ".join(cells) + " |")
    if results.get("failures"):
        lines += ["", "Failed runs: " + "; ".join(f"{f['key']} seed {f['seed']}: {f['error']}"
                                                  for f in results["failures"])]
    if any(not e["comparable"] for e in entries):
        lines += ["", "\\* not the paper's data (synthetic, embedded chorales or a smoke set-up): "
                      "not comparable."]
    if card.get("notes"):
        lines += ["", card["notes"].strip()]
    return "\n".join(lines) + "\n"


def card_names(card):
    """The zoo names a card uses."""
    return sorted({e["name"] for e in card["entries"]})
