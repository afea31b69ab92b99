"""Tuner jobs as data: the TOML file checked (:func:`load_job`) and merged once into a search spec
(:func:`plan`): a plain dict (recorded as ``job.json``) of the zoo name, fixed overrides, data,
search space, tuner and budget, ``[quick]`` and the configuration's defaults applied. The search,
its folder and processes read the spec, never the job file.
"""

import copy
from pathlib import Path

from keras_rnnreg import training, zoo
from keras_rnnreg.experiments import cards
from keras_rnnreg.tuning import spaces as spaces_lib
from keras_rnnreg.zoo import schema
from keras_rnnreg.zoo.schema import Field, Section

__all__ = ["DEFAULT_SEED", "JOB", "QUICK", "JobError", "card_path", "column_entries", "default_out",
           "load_job", "plan"]

TUNERS = ("random", "bayesian", "hyperband")
DEFAULT_SEED = 1  # of a job without `seed`: the search repeats (KerasTuner draws one for 0)
DEFAULT_TRIALS = 10


class JobError(schema.ConfigError):
    """A malformed tuner job: the message names the file and the key."""


_TEXT, _COUNT = Field(str), Field(int, minimum=1)
_QUICK = {"data": _TEXT, "max_trials": _COUNT, "epochs": _COUNT, "patience": _COUNT,
          "set": Field(list, item=str, doc='"key=value" overrides')}
#: The tables of a tuner job (:mod:`keras_rnnreg.tuning.jobs`): the job and its [quick].
QUICK = Section("the quick variant of a tuner job", {
    **_QUICK, "only": Field(list, item=str, doc="entry keys")})
JOB = Section("a tuner job", {
    **_QUICK, **{k: _TEXT for k in ("model", "space", "data_root", "description", "objective",
                                     "card", "column")},
    "param": Field(list, item=dict, what="[[param]] tables"),
    "tuner": Field(str, choices=TUNERS), "direction": Field(str, choices=("min", "max")),
    "seed": Field(int, minimum=1, doc="KerasTuner turns 0 into a random seed, so a search with "
                  "seed 0 would not repeat"),
    "executions_per_trial": _COUNT, "quick": Field(dict)})


def load_job(path):
    """The checked job table of a TOML file (or a shipped job's name); :class:`JobError` else."""
    argument = str(path)
    path, job = schema.load_toml(path, JobError, "job")
    schema.check_table(job, JOB, str(path), JobError)
    if "model" not in job and not ("card" in job and "column" in job):
        raise JobError(f"{path}: missing 'model' (a zoo name), or 'card' and 'column' (a Table 1 "
                       "column)")
    if "quick" in job:
        schema.check_table(job["quick"], QUICK, f"{path}: [quick]", JobError)
    try:
        space = job.get("param") or job.get("space", "noise_study_table2")
        job["space_entries"] = spaces_lib.get(space)
    except ValueError as err:
        raise JobError(f"{path}: {err}") from None
    job.update(stem=path.stem, path=str(path), argument=argument)
    return job


def default_out(job, quick=False):
    """``runs/tune-<job>`` (``-quick`` for the quick variant)."""
    return Path(f"runs/tune-{job['stem']}" + ("-quick" if quick else ""))


def card_path(job, job_path=None):
    """The job's card: a path relative to the job file, or a shipped card's name."""
    path = Path(job["card"]).expanduser()
    beside = path if path.is_absolute() else Path(job.get("path", job_path)).resolve().parent / path
    return beside if beside.is_file() else job["card"]


def column_entries(job, quick=False):
    """(card, the card entries of the job's column): the ``[quick] only`` ones when ``quick``."""
    card = cards.load_card(card_path(job))
    chosen = [e for e in card["entries"] if e.get("column") == job["column"]]
    if not chosen:
        columns = sorted({e.get("column") for e in card["entries"] if e.get("column")})
        raise JobError(f"{job['path']}: column={job['column']!r} is not a column of "
                       f"{card['path']}; expected one of {columns}")
    only = job.get("quick", {}).get("only") if quick else None
    if only:
        unknown = set(only) - {e["key"] for e in chosen}
        if unknown:
            raise JobError(f"{job['path']}: [quick] only: {sorted(unknown)} are not entries of "
                           f"column {job['column']!r}")
        chosen = [e for e in chosen if e["key"] in only]
    return card, chosen


def plan(job, quick=False, entry=None):
    """The search spec of a job (of the ``entry`` of a column job), ``[quick]`` merged in.

    Every value the search uses is here, defaults of the zoo configuration included
    (``training.epochs``, ``monitor``, ``mode``, ``patience``, ``data.source``).
    """
    q = job.get("quick", {}) if quick else {}
    model, data, entry_sets = job.get("model"), job.get("data"), []
    if "column" in job:
        if entry is None:
            raise JobError(f"{job['path']}: a column job searches each entry; name one")
        card_entry = next((e for e in column_entries(job, quick)[1] if e["key"] == entry), None)
        if card_entry is None:
            raise JobError(f"{job['path']}: {entry!r} is not an entry of column {job['column']!r}")
        model, entry_sets = card_entry["name"], list(card_entry.get("set", []))
        data = card_entry.get("data") or data
    overrides = entry_sets + list(job.get("set", [])) + list(q.get("set", []))
    base = zoo.resolve(model, overrides)
    t = base["training"]
    spec = {"job": job["argument"], "stem": job["stem"], "quick": bool(quick), "entry": entry,
            "model": model, "overrides": overrides,
            "data": q.get("data", data or base["data"]["source"]),
            "data_root": job.get("data_root"), "space": copy.deepcopy(job["space_entries"]),
            "tuner": job.get("tuner", "random"),
            "max_trials": q.get("max_trials", job.get("max_trials", DEFAULT_TRIALS)),
            "epochs": q.get("epochs", job.get("epochs", t["epochs"])),
            "patience": q.get("patience", job.get("patience", t["patience"])),
            "objective": job.get("objective", t["monitor"]),
            "direction": job.get("direction", t["mode"]), "seed": job.get("seed", DEFAULT_SEED),
            "executions_per_trial": job.get("executions_per_trial", 1)}
    try:
        training.check_monitor(base, "objective", spec["objective"])
    except schema.ConfigError as err:
        raise JobError(f"{job['path']}: {err}") from None
    return spec
