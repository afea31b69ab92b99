"""Appendix B's protocol for a column of the noise study's Table 1, run by ``rnnreg tune``.

"For each of the eight RNN models ... we generate 50 experiments with model hyper parameters chosen
from the ranges given in Tab. 2". A column job names a card and a column instead of a ``model``::

    card = "../zoo/noise_table1.toml"     # relative to the job file
    column = "JSB"                        # every entry of this column is searched
    space = "noise_study_table2"
    max_trials = 50
    [quick]
    only = ["jsb_rnn_plain", "jsb_rnn_ns"]  # entry keys (default: all of the column)

Each entry is searched in ``OUT/<key>/`` and its best trial evaluated on test (README,
"Distributed tuning"); ``OUT/<job>.md`` is the card's table for the column, ``OUT/results.json``
the numbers and chosen hyperparameters. Re-running continues: finished searches are reloaded.
"""

from pathlib import Path

from keras_rnnreg import _runfolder
from keras_rnnreg.experiments import cards
from keras_rnnreg.tuning import distributed, folder, search, specs

__all__ = ["entries", "run"]


def entries(job, job_path=None, quick=False):
    """:func:`~keras_rnnreg.tuning.specs.column_entries`; ``job_path``: the job file, for a
    ``job`` that ``specs.load_job`` did not make."""
    return specs.column_entries(job if job_path is None else {"path": str(job_path), **job}, quick)


def run(job, quick=False, out_dir=None, data_root=None, log=print, workers=0):
    """Search every entry of the column, evaluate each best trial on test, write the table."""
    card, chosen = specs.column_entries(job, quick)
    plans = [specs.plan(job, quick=quick, entry=e["key"]) for e in chosen]  # errors before any
    out = Path(out_dir or specs.default_out(job, quick))
    reports, results = [], {}
    for i, (entry, spec) in enumerate(zip(chosen, plans)):
        spread = f"{workers} workers, " if workers else ""
        log(f"[{i + 1}/{len(chosen)}] {entry['key']}: searching ({spread}results in "
            f"{out / entry['key']})")
        with folder.claim(out / entry["key"], spec, workers) as lock:
            if workers:
                result = distributed.search(spec, out / entry["key"], workers, data_root=data_root,
                                            log=log, lock=lock)
            else:
                result = search.search(spec, out / entry["key"], data_root=data_root, log=log)
        results[entry["key"]] = result
        report = {**result["best_trial_test"], "paper": entry.get("paper"),
                  "seed": result["seed"], "name": entry["name"], "data": result["data"]}
        log(f"    best trial {report['trial_id']} (validation {result['best_score']:.4g}): "
            f"test {report['metric']} = {report['ours']:.4g} (paper {entry.get('paper')})")
        reports.append(({"key": entry["key"], "seed": report["seed"]}, report))
    return _write_table(job, card, chosen, out, results, reports, quick, workers)


def _write_table(job, card, chosen, out, results, reports, quick, workers):
    view = dict(card, columns=[job["column"]], stem=job["stem"],
                title=f"{card.get('title', card['stem'])}: column {job['column']}, best of "
                      f"{results[chosen[0]['key']]['max_trials']} random-search trials per model "
                      "(Appendix B)")
    summary = cards.summarize(view, reports)
    kept = ("best_hyperparameters", "best_score", "trials", "trials_by_worker", "train_command",
            "directory")
    summary["searches"] = {key: {k: r[k] for k in kept} for key, r in results.items()}
    _runfolder.write_json_atomic(out / "results.json", summary)
    command = (f"rnnreg tune {job['argument']}" + (" --quick" if quick else "")
               + (f" --workers {workers}" if workers else ""))
    table = out / f"{job['stem']}.md"
    _runfolder.atomic_write(table, cards.markdown(view, summary, quick=quick, command=command))
    paper = {e["key"]: e.get("paper") for e in chosen}
    return {"job": job["argument"], "column": job["column"], "table": str(table),
            "directory": str(out),
            "entries": {key: {"best_score": r["best_score"], "test": r["best_trial_test"]["ours"],
                              "paper": paper[key]}
                        for key, r in results.items()}}
