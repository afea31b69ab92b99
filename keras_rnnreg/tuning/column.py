"""Appendix B's protocol for a whole column of the noise study's Table 1, run by ``rnnreg tune``.

"For each of the eight RNN models ... we generate 50 experiments with model hyper parameters chosen
from the ranges given in Tab. 2" and report the best one's test NLL. A column job names a card and
one of its columns instead of a ``model``::

    card = "../zoo/noise_table1.toml"     # relative to the job file
    column = "JSB"                        # every entry of this column is searched
    space = "noise_study_table2"
    tuner = "random"
    max_trials = 50
    ...
    [quick]
    only = ["jsb_rnn_plain", "jsb_rnn_ns"]  # entry keys (default: all of the column)

Each entry gets its own search in ``OUT/<key>/`` (the entry's zoo name, data and overrides, the
job's space and budget; ``--workers N`` runs each search distributed). The best trial (by the
objective, on validation data) is reloaded from its best-epoch checkpoint and evaluated on the test
split; ``OUT/<job>.md`` is the card's table for that column (ours / paper) and ``OUT/results.json``
holds the numbers and the chosen hyperparameters. Re-running continues: finished searches are
reloaded, not repeated.
"""

import copy
from pathlib import Path

from keras_rnnreg.experiments import cards

__all__ = ["card_path", "entries", "entry_job", "evaluate_best", "run"]


def card_path(job, job_path):
    """The job's card: a path relative to the job file, or a shipped card's name."""
    path = Path(job["card"]).expanduser()
    beside = path if path.is_absolute() else Path(job.get("path", job_path)).resolve().parent / path
    return beside if beside.is_file() else job["card"]


def entries(job, job_path, quick=False):
    """The card entries of the job's column (the ``[quick] only`` ones in the quick variant)."""
    from keras_rnnreg.tuning.jobs import JobError

    card = cards.load_card(card_path(job, job_path))
    chosen = [e for e in card["entries"] if e.get("column") == job["column"]]
    if not chosen:
        columns = sorted({e.get("column") for e in card["entries"] if e.get("column")})
        raise JobError(f"{job_path}: column={job['column']!r} is not a column of {card['path']}; "
                       f"expected one of {columns}")
    only = job.get("quick", {}).get("only") if quick else None
    if only:
        unknown = set(only) - {e["key"] for e in chosen}
        if unknown:
            raise JobError(f"{job_path}: [quick] only: {sorted(unknown)} are not entries of column "
                           f"{job['column']!r}")
        chosen = [e for e in chosen if e["key"] in only]
    return card, chosen


def entry_job(job, job_path, key, quick=False):
    """The single-model job of one entry of the column: its zoo name, data and overrides."""
    _, chosen = entries(job, job_path, quick)
    entry = next((e for e in chosen if e["key"] == key), None)
    if entry is None:
        from keras_rnnreg.tuning.jobs import JobError

        raise JobError(f"{job_path}: {key!r} is not an entry of column {job['column']!r}")
    sub = copy.deepcopy(job)
    sub["model"] = entry["name"]
    if entry.get("data"):
        sub["data"] = entry["data"]
    sub["set"] = list(entry.get("set", [])) + list(job.get("set", []))
    sub["entry"] = entry
    return sub


def evaluate_best(tuner, hypermodel, task, data, source):
    """The best trial's test numbers, its best-epoch weights reloaded
    (``tuner.get_best_models``)."""
    trial = tuner.oracle.get_best_trials(1)[0]
    model = tuner.load_model(trial)
    config = hypermodel.config(trial.hyperparameters.copy())
    test = task.evaluate(model, config, data, "test")
    history = trial.metrics.get_history(tuner.oracle.objective.name) if trial.metrics.exists(
        tuner.oracle.objective.name) else []
    return {"metric": task.metric, "ours": float(test[task.metric]), "test": test,
            "trial_id": trial.trial_id, "best_epoch": int(trial.best_step) + 1,
            "epochs_run": len(history), "comparable": task.comparable(source, data)}


def run(job_path, job, quick=False, out_dir=None, data_root=None, log=print, workers=0):
    """Search every entry of the column, evaluate each best trial on test, write the table."""
    from keras_rnnreg import training
    from keras_rnnreg.tuning import jobs

    card, chosen = entries(job, job_path, quick)
    out = Path(out_dir or f"runs/tune-{job['stem']}" + ("-quick" if quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    reports, results = [], {}
    for i, entry in enumerate(chosen):
        spread = f"{workers} workers, " if workers else ""
        log(f"[{i + 1}/{len(chosen)}] {entry['key']}: searching ({spread}results in "
            f"{out / entry['key']})")
        result = jobs.run_job(job_path, quick=quick, out_dir=out / entry["key"],
                              data_root=data_root, log=log, workers=workers, entry=entry["key"])
        results[entry["key"]] = result
        report = {**result["best_trial_test"], "paper": entry.get("paper"),
                  "seed": result["seed"], "name": entry["name"], "data": result["data"]}
        log(f"    best trial {report['trial_id']} (validation {result['best_score']:.4g}): "
            f"test {report['metric']} = {report['ours']:.4g} (paper {entry.get('paper')})")
        reports.append(({"key": entry["key"], "seed": report["seed"]}, report))
    view = dict(card, columns=[job["column"]], stem=job["stem"],
                title=f"{card.get('title', card['stem'])}: column {job['column']}, best of "
                      f"{results[chosen[0]['key']]['max_trials']} random-search trials per model "
                      "(Appendix B)")
    summary = cards.summarize(view, reports)
    kept = ("best_hyperparameters", "best_score", "trials", "trials_by_worker", "train_command",
            "directory")
    summary["searches"] = {key: {k: r[k] for k in kept} for key, r in results.items()}
    training.write_json_atomic(out / "results.json", summary)
    command = (f"rnnreg tune {job_path}" + (" --quick" if quick else "")
               + (f" --workers {workers}" if workers else ""))
    table = out / f"{job['stem']}.md"
    table.write_text(cards.markdown(view, summary, quick=quick, command=command))
    paper = {e["key"]: e.get("paper") for e in chosen}
    return {"job": str(job_path), "column": job["column"], "table": str(table),
            "directory": str(out),
            "entries": {key: {"best_score": r["best_score"], "test": r["best_trial_test"]["ours"],
                              "paper": paper[key]}
                        for key, r in results.items()}}
