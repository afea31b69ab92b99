"""Tuner jobs (top-level ``tuning/*.toml``), run by ``rnnreg tune JOB`` (a shipped job's name or
a TOML path).

A job names a zoo configuration, a search space (:mod:`keras_rnnreg.tuning.spaces`), the tuner
and its budget::

    model = "jsb_rnn_ns"
    space = "noise_study_table2"          # or [[param]] tables (search-space entries)
    data = "polyphonic/JSB_Chorales.mat"  # default: the configuration's data.source
    data_root = "~/corpora"               # optional (default: --data-root, $RNNREG_DATA, or
                                          # the data folder)
    tuner = "random"                      # random | bayesian | hyperband
    max_trials = 50
    epochs = 200                          # per trial (hyperband: the maximum)
    objective = "val_nll_per_timestep"    # default: training.monitor
    direction = "min"                     # default: training.mode
    patience = 20                         # early stopping in a trial (default training.patience)
    seed = 1                              # default 1; KerasTuner draws a random one for 0
    set = ["training.patience=20"]        # fixed overrides

    [quick]                               # seconds, for CI
    data = "synthetic"
    max_trials = 2
    epochs = 1
    set = ["model.units=4", "data.limit=4"]

The tuner writes into ``OUT`` (``runs/tune-<job>`` by default; an existing search is continued);
``OUT/best.json`` holds the best hyperparameters, their score and the overrides to train them with
``rnnreg train NAME --set ...``. ``--workers N`` runs the search in KerasTuner's distributed mode
(:mod:`keras_rnnreg.tuning.distributed`); a job with ``card`` and ``column`` instead of ``model`` is
Appendix B's protocol for a Table 1 column (:mod:`keras_rnnreg.tuning.column`).
"""

import json
import os
from collections import Counter
from pathlib import Path

import keras
import keras_tuner

from keras_rnnreg import training
from keras_rnnreg.callbacks import tensorboard_available
from keras_rnnreg.tuning import hypermodels
from keras_rnnreg.tuning import spaces as spaces_lib
from keras_rnnreg.tuning.distributed import WORKER_FILE
from keras_rnnreg.zoo import schema

__all__ = ["JobError", "load_job", "run_job"]

JOB_KEYS = {"model", "space", "param", "data", "data_root", "tuner", "max_trials", "epochs",
            "objective", "direction", "patience", "seed", "set", "quick", "description",
            "executions_per_trial", "card", "column"}
QUICK_KEYS = {"data", "max_trials", "epochs", "set", "patience", "only"}
TUNERS = ("random", "bayesian", "hyperband")
DEFAULT_SEED = 1  # of a job without `seed`: the search repeats (KerasTuner draws one for 0)


def _tuner_class(base):
    """``base`` whose TensorBoard hook is skipped when the ``tensorboard`` package is missing.

    On the TensorFlow backend KerasTuner imports ``tensorboard`` in every trial
    (``Tuner._configure_tensorboard_dir``), which TensorFlow 2.21 does not install.
    """

    class Tuner(base):
        def on_trial_begin(self, trial):
            # Which tuner process ran the trial (``tuner0`` unless distributed: ``rnnreg tune
            # --workers``).
            path = Path(self.get_trial_dir(trial.trial_id)) / WORKER_FILE
            path.write_text(json.dumps({"tuner_id": self.tuner_id, "pid": os.getpid()}) + "\n")
            return super().on_trial_begin(trial)

        def on_search_begin(self):
            from keras_rnnreg.tuning import distributed

            distributed.start_together()  # workers of `rnnreg tune --workers N` begin together
            return super().on_search_begin()

        def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
            if tensorboard_available():
                return super()._configure_tensorboard_dir(callbacks, trial, execution)
            return None

    Tuner.__name__ = base.__name__
    return Tuner


class JobError(schema.ConfigError):
    """A malformed tuner job: the message names the file and the key."""


_STRING = schema.text()
#: key -> (check, what is expected), for the job and its [quick] table.
VALUE_CHECKS = {
    **{key: _STRING for key in ("model", "space", "data", "data_root", "description", "objective",
                                "card", "column")},
    "tuner": (lambda v: v in TUNERS, "one of " + ", ".join(TUNERS)),
    "direction": (lambda v: v in ("min", "max"), "'min' or 'max'"),
    "max_trials": schema.integer_at_least(1),
    "epochs": schema.integer_at_least(1),
    "patience": schema.integer_at_least(1),
    # KerasTuner's oracles take `seed or random.randint(1, 10000)`: 0 would be a random search.
    "seed": (schema.integer_at_least(1)[0], "an integer >= 1 (KerasTuner turns 0 into a random "
             "seed, so a search with seed 0 would not repeat)"),
    "executions_per_trial": schema.integer_at_least(1),
    "set": schema.list_of_text('a list of "key=value" strings'),
    "param": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
              "[[param]] tables"),
    "only": schema.list_of_text("a list of entry keys"),
}


def load_job(path):
    path, job = schema.load_toml(path, JobError, "job")
    schema.check_table(job, JOB_KEYS, {}, str(path), JobError)
    if "model" not in job and not ("card" in job and "column" in job):
        raise JobError(f"{path}: missing 'model' (a zoo name), or 'card' and 'column' (a Table 1 "
                       "column)")
    schema.check_table(job, JOB_KEYS, VALUE_CHECKS, str(path), JobError)
    if "quick" in job:
        schema.check_table(job["quick"], QUICK_KEYS, VALUE_CHECKS, f"{path}: [quick]", JobError)
    try:
        space = job.get("param") or job.get("space", "noise_study_table2")
        job["space_entries"] = spaces_lib.get(space)
    except ValueError as err:
        raise JobError(f"{path}: {err}") from None
    job.update(stem=path.stem, path=str(path))
    return job


def run_job(path, quick=False, out_dir=None, data_root=None, log=print, workers=0, entry=None):
    """Run a tuner job; returns ``{"best_hyperparameters", "best_score", "overrides", ...}``.

    ``workers > 0``: KerasTuner's distributed mode, a chief oracle and ``workers`` worker processes
    on 127.0.0.1 (:mod:`keras_rnnreg.tuning.distributed`); the result also says which worker ran
    each trial. A column job (``card`` and ``column``) runs :func:`keras_rnnreg.tuning.column.run`;
    ``entry`` (a key of that column) runs the search of that entry alone.
    """
    job = load_job(path)
    if "column" in job:
        from keras_rnnreg.tuning import column

        if entry is None:
            return column.run(path, job, quick=quick, out_dir=out_dir, data_root=data_root,
                              log=log, workers=workers)
        job = column.entry_job(job, path, entry, quick=quick)
    q = job.get("quick", {}) if quick else {}
    overrides = list(job.get("set", [])) + list(q.get("set", []))
    base = hypermodels.zoo.resolve(job["model"], overrides)
    objective_name = job.get("objective", base["training"]["monitor"])
    try:
        training.check_monitor(base, "objective", objective_name)
    except schema.ConfigError as err:
        raise JobError(f"{path}: {err}") from None
    source = q.get("data", job.get("data", base["data"]["source"]))
    task, data, source, _, base = training.load_task_data(base, source,
                                                          data_root or job.get("data_root"))
    out = Path(out_dir or f"runs/tune-{job['stem']}" + ("-quick" if quick else ""))
    if workers:  # then reload the finished search and summarize it
        from keras_rnnreg.tuning import distributed

        distributed.search(path, workers, out, quick=quick, data_root=data_root, log=log,
                           entry=entry)
    epochs = q.get("epochs", job.get("epochs", base["training"]["epochs"]))
    max_trials = q.get("max_trials", job.get("max_trials", 10))
    direction = job.get("direction", base["training"]["mode"])
    objective = keras_tuner.Objective(objective_name, direction=direction)
    hypermodel = hypermodels.ZooHyperModel(base, space=job["space_entries"], data=data,
                                           epochs=epochs, seed=job.get("seed", DEFAULT_SEED))
    kind = job.get("tuner", "random")
    base_class = {"hyperband": keras_tuner.Hyperband, "random": keras_tuner.RandomSearch,
                  "bayesian": keras_tuner.BayesianOptimization}[kind]
    budget = {"max_epochs": epochs} if kind == "hyperband" else {"max_trials": max_trials}
    tuner = _tuner_class(base_class)(hypermodel, objective=objective, directory=str(out.parent),
                                     project_name=out.name, seed=job.get("seed", DEFAULT_SEED),
                                     overwrite=False, **budget)
    patience = q.get("patience", job.get("patience", base["training"]["patience"]))
    callbacks = []
    if patience:
        callbacks.append(keras.callbacks.EarlyStopping(objective.name, patience=patience,
                                                       mode=objective.direction))
    if not workers:
        log(f"tuning {job['model']} over {len(hypermodel.active_entries())} hyperparameters "
            f"({', '.join(e['name'] for e in hypermodel.active_entries())}); {kind}, "
            f"{max_trials} trials, {epochs} epochs each; results in {out}")
        tuner.search(callbacks=callbacks, verbose=0)
        if "KERASTUNER_ORACLE_IP" in os.environ:  # in a distributed search the parent summarizes
            return None
    elif (out / "oracle.json").exists():
        tuner.oracle.reload()  # the chief's oracle: every trial, whichever worker ran it
    finished = tuner.oracle.get_best_trials(1)
    if not finished or finished[0].score is None:
        raise JobError(f"{path}: no trial finished with a score for {objective.name!r} (see the "
                       f"trials' errors above and in {out})")
    best = tuner.get_best_hyperparameters(1)[0]
    trial = finished[0]
    best_overrides = []
    for entry in hypermodel.active_entries():
        if entry["name"] in best.values:
            for key in [entry["key"], *entry.get("also", [])]:
                best_overrides.append(f"{key}={best.values[entry['name']]}")
    result = {
        "job": str(path),
        "model": job["model"],
        "data": source,
        "best_hyperparameters": best.values,
        "best_score": trial.score,
        "objective": objective.name,
        "trials": len(tuner.oracle.trials),
        "trials_by_worker": _count_workers(out),
        "max_trials": max_trials,
        "seed": job.get("seed", DEFAULT_SEED),
        "overrides": best_overrides,
        "train_command": f"rnnreg train {job['model']} "
        + " ".join(f"--set {o}" for o in overrides + best_overrides),
        "directory": str(out),
    }
    if "entry" in job:  # an entry of a Table 1 column: its best trial's test number fills the table
        from keras_rnnreg.tuning import column

        result["best_trial_test"] = column.evaluate_best(tuner, hypermodel, task, data, source)
    out.mkdir(parents=True, exist_ok=True)
    (out / "best.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def _count_workers(project_dir):
    from keras_rnnreg.tuning.distributed import trial_workers

    return dict(sorted(Counter(trial_workers(project_dir).values()).items()))
