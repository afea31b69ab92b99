"""The one search of a spec (:func:`keras_rnnreg.tuning.specs.plan`) over its tuner folder.

:func:`search` builds the spec's KerasTuner tuner over ``OUT`` (continuing a search found there),
runs it, and :func:`summarize` writes ``best.json``; in a distributed process
(``KERASTUNER_TUNER_ID``) the same call is the chief or a worker, and the parent summarizes.
KerasTuner's state files are written atomically here (:func:`keras_rnnreg._runfolder.atomic_write`):
a killed process leaves each file whole.
"""

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import keras
import keras_tuner
from keras_tuner.src import utils as _keras_tuner_utils

from keras_rnnreg import _runfolder, training
from keras_rnnreg.callbacks import tensorboard_available
from keras_rnnreg.tuning import folder, hypermodels
from keras_rnnreg.tuning.specs import JobError

__all__ = ["BARRIER", "CHIEF", "Prepared", "evaluate_best", "prepare", "search", "start_together",
           "summarize"]

CHIEF = "chief"
BARRIER = "RNNREG_TUNE_START_TOGETHER"  # "<folder>|<launch id>|<workers>", set by distributed
TUNERS = {"hyperband": keras_tuner.Hyperband, "random": keras_tuner.RandomSearch,
          "bayesian": keras_tuner.BayesianOptimization}


def _save_json(path, obj):
    """KerasTuner's ``utils.save_json`` (every state file it writes), atomic."""
    text = json.dumps(obj)
    _runfolder.atomic_write(path, text)
    return text


_keras_tuner_utils.save_json = _save_json


def start_together(timeout=300.0):
    """In a worker: wait until every worker of the launch has built its tuner (or ``timeout``),
    so that the first one up does not take several trials before the others connect."""
    spec = os.environ.get(BARRIER)
    if not spec or os.environ.get("KERASTUNER_TUNER_ID", CHIEF) == CHIEF:
        return
    out, launch, count = spec.rsplit("|", 2)
    Path(out, f".ready-{launch}-{os.environ['KERASTUNER_TUNER_ID']}").touch()
    deadline = time.time() + timeout
    while len(list(Path(out).glob(f".ready-{launch}-*"))) < int(count) and time.time() < deadline:
        time.sleep(0.2)


def _tuner_class(base):
    """``base`` that records which process ran each trial, starts workers together and skips its
    TensorBoard hook without the ``tensorboard`` package (TensorFlow 2.21 does not install it)."""

    class Tuner(base):
        def on_trial_begin(self, trial):
            path = Path(self.get_trial_dir(trial.trial_id)) / folder.WORKER_FILE
            _runfolder.write_json_atomic(path, {"tuner_id": self.tuner_id, "pid": os.getpid()})
            _runfolder.fault_point("tune-trial", trial.trial_id)  # the tests' kill -9 of a worker
            return super().on_trial_begin(trial)

        def on_search_begin(self):
            start_together()  # workers of `rnnreg tune --workers N` begin together
            return super().on_search_begin()

        def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
            if tensorboard_available():
                return super()._configure_tensorboard_dir(callbacks, trial, execution)
            return None

    Tuner.__name__ = base.__name__
    return Tuner


@dataclass
class Prepared:
    """A spec with its data loaded and its hypermodel made: what a tuner is built from."""

    spec: dict
    out: Path
    task: object
    data: dict
    source: str
    hypermodel: hypermodels.ZooHyperModel

    def tuner(self):
        """The spec's KerasTuner tuner over ``out`` (reloading the search found there)."""
        spec = self.spec
        own = self.out / f"{os.environ.get('KERASTUNER_TUNER_ID', 'tuner0')}.json"
        if (self.out / "oracle.json").exists() and not own.exists():
            # KerasTuner reloads a search only when it finds this process's own state file (its
            # content is {}); without it, a search begun with other tuner ids (--workers, or none)
            # would start again from trial 0, overwriting the finished trials
            _runfolder.atomic_write(own, "{}")
        budget = ({"max_epochs": spec["epochs"]} if spec["tuner"] == "hyperband"
                  else {"max_trials": spec["max_trials"]})
        objective = keras_tuner.Objective(spec["objective"], direction=spec["direction"])
        return _tuner_class(TUNERS[spec["tuner"]])(
            self.hypermodel, objective=objective, directory=str(self.out.parent),
            project_name=self.out.name, seed=spec["seed"], overwrite=False,
            executions_per_trial=spec["executions_per_trial"], **budget)


def prepare(spec, out, data_root=None):
    """Load the spec's data and make its hypermodel (data errors come before any trial)."""
    base = hypermodels.zoo.resolve(spec["model"], spec["overrides"])
    task, data, source, _, base = training.load_task_data(base, spec["data"],
                                                          data_root or spec["data_root"])
    hypermodel = hypermodels.ZooHyperModel(base, space=spec["space"], data=data,
                                           epochs=spec["epochs"], seed=spec["seed"])
    return Prepared(spec, Path(out), task, data, source, hypermodel)


def search(spec, out, data_root=None, log=print):
    """Run (or continue) the search of ``spec`` in the tuner folder ``out``; returns
    :func:`summarize`'s result, or None in a process of a distributed search."""
    prepared = prepare(spec, out, data_root)
    names = [e["name"] for e in prepared.hypermodel.active_entries()]
    log(f"tuning {spec['model']} over {len(names)} hyperparameters ({', '.join(names)}); "
        f"{spec['tuner']}, {spec['max_trials']} trials, {spec['epochs']} epochs each; results in "
        f"{out}")
    tuner = prepared.tuner()
    stop = [keras.callbacks.EarlyStopping(spec["objective"], patience=spec["patience"],
                                          mode=spec["direction"])] if spec["patience"] else []
    tuner.search(callbacks=stop, verbose=0)
    if "KERASTUNER_ORACLE_IP" in os.environ:  # the chief or a worker: the parent summarizes
        return None
    return summarize(prepared, tuner)


def summarize(prepared, tuner=None):
    """The result of a search whose every trial finished (``best.json``, also returned), else
    :class:`~keras_rnnreg.tuning.folder.SearchIncomplete` naming the unfinished trials. ``tuner``
    None: build one and reload the search from the folder (after a distributed search)."""
    spec, out = prepared.spec, prepared.out
    if tuner is None:
        tuner = prepared.tuner()
        if (out / "oracle.json").exists():
            tuner.oracle.reload()  # the chief's oracle: every trial, whichever worker ran it
    left = folder.unfinished(out)
    if left:
        raise folder.SearchIncomplete(f"the search in {out} is not finished: trial(s) "
                                      f"{', '.join(left)} did not end; run the same command again "
                                      "to run them")
    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials or best_trials[0].score is None:
        raise JobError(f"{spec['job']}: no trial finished with a score for {spec['objective']!r} "
                       f"(see the trials' errors above and in {out})")
    best, finished = best_trials[0], folder.trial_states(out)
    values = best.hyperparameters.values
    best_overrides = [f"{key}={values[e['name']]}" for e in prepared.hypermodel.active_entries()
                      if e["name"] in values for key in [e["key"], *e.get("also", [])]]
    workers = {t: w for t, w in folder.trial_workers(out).items() if t in finished}
    result = {
        "job": spec["job"], "model": spec["model"], "data": prepared.source,
        "best_hyperparameters": values, "best_score": best.score,
        "objective": spec["objective"], "trials": len(finished),
        "trials_by_worker": dict(sorted(Counter(workers.values()).items())),
        "max_trials": spec["max_trials"], "seed": spec["seed"], "overrides": best_overrides,
        "train_command": f"rnnreg train {spec['model']} "
        + " ".join(f"--set {o}" for o in spec["overrides"] + best_overrides),
        "directory": str(out),
    }
    if spec["entry"]:  # an entry of a Table 1 column: its best trial's test number fills the table
        result["best_trial_test"] = evaluate_best(prepared, tuner)
    _runfolder.atomic_write(out / "best.json", json.dumps(result, indent=2, default=str) + "\n")
    return result


def evaluate_best(prepared, tuner):
    """The best trial's test numbers, its best-epoch weights reloaded (``tuner.load_model``)."""
    trial = tuner.oracle.get_best_trials(1)[0]
    try:
        model = tuner.load_model(trial)
    except (OSError, ValueError) as err:
        raise _runfolder.RunError(
            f"{prepared.out}/trial_{trial.trial_id}/checkpoint.weights.h5: cannot load the best "
            f"trial's weights ({type(err).__name__}: {' '.join(str(err).split())[:200]}); the "
            "checkpoint is damaged") from None
    config = prepared.hypermodel.config(trial.hyperparameters.copy())
    test = prepared.task.evaluate(model, config, prepared.data, "test")
    objective = tuner.oracle.objective.name
    history = trial.metrics.get_history(objective) if trial.metrics.exists(objective) else []
    return {"metric": prepared.task.metric, "ours": float(test[prepared.task.metric]),
            "test": test, "trial_id": trial.trial_id, "best_epoch": int(trial.best_step) + 1,
            "epochs_run": len(history),
            "comparable": prepared.task.comparable(prepared.source, prepared.data)}
